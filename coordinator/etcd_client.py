"""The etcd connection: a thin, gevent-safe wrapper over ``pyetcd`` (etcd-sdk-python).

Owns the gRPC channel to etcd and the workarounds gevent needs (see
``../shared/reference/dependencies.md`` §3): ``init_gevent()`` before any gRPC object,
the client created in the node process (never before a fork), a short endpoint
``time_retry`` instead of the default 300 s blackout, and watches that are re-created
from a fresh read whenever they fail. ``PrefixCache`` keeps an always-current copy of
a key prefix and calls back on every change; it also re-reads the prefix periodically,
so a watch that dies silently costs at most one resync interval.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.event
import grpc
import grpc.experimental.gevent as grpc_gevent

from mesh.base.wake_loop import TransientError

_initialised = False


def init_gevent() -> None:
    global _initialised
    if not _initialised:
        grpc_gevent.init_gevent()
        _initialised = True


log = logging.getLogger("coordinator.etcd")


class EtcdUnavailable(TransientError):
    """etcd did not answer (down, partitioned, or timed out)."""


class Etcd:
    """Connection to the etcd cluster, with every key under ``/skein/<cluster>/``."""

    def __init__(self, endpoints: list[str], *, prefix: str, timeout: float = 3.0,
                 username: str = "", password: str = "", ca_file: str = "",
                 cert_file: str = "", key_file: str = "") -> None:
        init_gevent()
        from pyetcd import events as etcd_events
        from pyetcd import exceptions as etcd_exceptions
        from pyetcd.client import Endpoint, MultiEndpointEtcd3Client

        self.prefix = prefix.rstrip("/") + "/"
        self.timeout = timeout
        creds = None
        if ca_file:
            def _read(path: str) -> bytes | None:
                if not path:
                    return None
                with open(path, "rb") as fh:
                    return fh.read()
            creds = grpc.ssl_channel_credentials(_read(ca_file), _read(key_file), _read(cert_file))
        eps = []
        for ep in endpoints:
            host, _, port = ep.replace("http://", "").replace("https://", "").rpartition(":")
            eps.append(Endpoint(host, int(port), secure=bool(creds), creds=creds, time_retry=1.0,
                                opts=[("grpc.keepalive_time_ms", 2000), ("grpc.keepalive_timeout_ms", 2000)]))
        self._user = username
        self._password = password
        self._tls = bool(creds)
        self._client = MultiEndpointEtcd3Client(endpoints=eps, timeout=timeout, failover=True)
        if username:
            try:
                self._authenticate()
            except grpc.RpcError as exc:
                raise EtcdUnavailable(f"etcd authentication as {username!r} failed: {exc.code().name}") from None
        self._errors = (etcd_exceptions.Etcd3Exception, grpc.RpcError, ValueError)
        self.DeleteEvent = etcd_events.DeleteEvent
        self.tx = self._client.transactions

    def _authenticate(self) -> None:
        """Get an etcd auth token for user/password and attach it to every call.

        On a TLS channel it goes as gRPC call credentials; on a plaintext channel gRPC
        refuses call credentials, so it goes as the ``token`` metadata etcd reads.
        """
        from pyetcd import etcdrpc

        c = self._client
        resp = c.authstub.Authenticate(etcdrpc.AuthenticateRequest(name=self._user, password=self._password),
                                       self.timeout)
        c.metadata = (("token", resp.token),)
        if self._tls:
            from pyetcd.client import EtcdTokenCallCredentials

            c.call_credentials = grpc.metadata_call_credentials(EtcdTokenCallCredentials(resp.token))
        else:
            c.call_credentials = None
        c._clear_old_stubs()  # the watcher picks up the new token

    def key(self, *parts: object) -> str:
        return self.prefix + "/".join(str(p) for p in parts)

    def _call(self, fn: Callable, *args, **kwargs):
        for attempt in (1, 2):
            try:
                return fn(*args, **kwargs)
            except self._errors as exc:
                text = str(exc).lower()
                if attempt == 1 and self._user and ("token" in text or "unauthenticated" in text):
                    try:
                        self._authenticate()  # the token expired (or etcd restarted): log in again
                        continue
                    except self._errors:
                        pass
                raise EtcdUnavailable(f"{type(exc).__name__}: {exc}") from None

    # ---- key/value
    def get(self, key: str) -> tuple[bytes | None, object | None]:
        return self._call(self._client.get, key)

    def get_prefix(self, prefix: str) -> tuple[dict[str, bytes], int]:
        """All keys under ``prefix`` and the store revision they were read at."""
        resp = self._call(self._client.get_prefix_response, prefix)
        items = {kv.key.decode(): kv.value for kv in resp.kvs}
        return items, resp.header.revision

    def put(self, key: str, value: bytes | str, lease: object | None = None) -> None:
        self._call(self._client.put, key, value, lease=lease)

    def delete(self, key: str) -> bool:
        return bool(self._call(self._client.delete, key))

    def txn(self, compare: list, success: list, failure: list | None = None) -> tuple[bool, list]:
        return self._call(self._client.transaction, compare=compare, success=success, failure=failure or [])

    def create(self, key: str, value: bytes | str, lease: object | None = None) -> bool:
        """Put ``key`` only if it does not exist; True if this call created it."""
        ok, _ = self.txn([self.tx.create(key) == 0], [self.tx.put(key, value, lease)])
        return ok

    # ---- leases
    def grant(self, ttl: int):
        return self._call(self._client.lease, ttl)

    def refresh(self, lease) -> int:
        """Keep ``lease`` alive; returns its remaining TTL (0 means it has expired)."""
        resps = self._call(lambda: list(self._client.refresh_lease(lease.id)))
        return int(resps[0].TTL) if resps else 0

    def revoke(self, lease) -> None:
        self._call(self._client.revoke_lease, lease.id)

    def lease_id_of(self, key: str) -> int:
        _, meta = self.get(key)
        return int(meta.lease_id) if meta is not None else 0

    def watch_prefix(self, prefix: str, start_revision: int):
        """(iterator of responses, cancel) from ``start_revision``."""
        return self._call(self._client.watch_prefix_response, prefix, start_revision=start_revision)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


class PrefixCache:
    """A live copy of every key under a prefix, kept by a watch plus periodic re-reads.

    ``on_change(items)`` runs in this cache's greenlet after every batch of changes.
    """

    def __init__(self, etcd: Etcd, prefix: str, on_change: Callable[[dict[str, bytes]], None] | None = None,
                 resync_interval: float = 10.0, name: str = "") -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.items: dict[str, bytes] = {}
        self.revision = 0
        self.on_change = on_change
        self.resync_interval = resync_interval
        self.name = name or prefix
        self.loaded = gevent.event.Event()
        self.healthy = False
        self._greenlets: list[gevent.Greenlet] = []
        self._cancel: Callable[[], None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._run), gevent.spawn(self._resync_loop)]

    def stop(self) -> None:
        self._stopped = True
        if self._cancel:
            try:
                self._cancel()
            except Exception:
                pass
        gevent.killall(self._greenlets, block=False)

    def _notify(self) -> None:
        if self.on_change:
            try:
                self.on_change(dict(self.items))
            except Exception:
                log.exception("watch handler for %s failed", self.name)

    def _load(self) -> None:
        items, rev = self.etcd.get_prefix(self.prefix)
        changed = items != self.items
        self.items, self.revision = items, rev
        self.loaded.set()
        if changed:
            self._notify()

    def _run(self) -> None:
        failures = 0
        while not self._stopped:
            try:
                self._load()
                it, self._cancel = self.etcd.watch_prefix(self.prefix, self.revision + 1)
                if failures:
                    log.info("watch on %s restored after %d failed attempt(s)", self.name, failures)
                failures = 0
                self.healthy = True
                for resp in it:
                    changed = False
                    for ev in resp.events:
                        key = ev.key.decode()
                        if isinstance(ev, self.etcd.DeleteEvent):
                            changed |= self.items.pop(key, None) is not None
                        elif self.items.get(key) != ev.value:
                            self.items[key] = ev.value
                            changed = True
                        self.revision = max(self.revision, ev.mod_revision)
                    if changed:
                        self._notify()
                if not self._stopped:
                    log.warning("watch on %s ended; re-reading", self.name)
            except gevent.GreenletExit:
                return
            except Exception as exc:
                self.healthy = False
                if not self._stopped:
                    failures += 1
                    if failures == 1 or failures % 60 == 0:
                        log.warning("watch on %s failed (%s); retrying (attempt %d)", self.name, exc, failures)
                    gevent.sleep(min(0.25 * failures, 1.0))

    def _resync_loop(self) -> None:
        while not self._stopped:
            gevent.sleep(self.resync_interval)
            try:
                self._load()
            except Exception as exc:
                log.debug("resync of %s failed: %s", self.name, exc)
