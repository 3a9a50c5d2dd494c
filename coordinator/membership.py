"""This node's membership: its key under an etcd lease, kept alive, and its session state.

``join()`` registers ``members/<id>`` only if no live node holds that id. If the key
exists, the holder is pinged at its node-to-node address: an answer from another
process means a duplicate id and the start is refused; silence means a previous run
of this node died, and ``join()`` waits for its lease to expire (at most the TTL).

The session is alive while lease refreshes succeed; after ``ttl`` seconds without a
successful refresh (etcd down or unreachable) it is not, and the node must stop acting
as controller or slot leader. When etcd answers again and the lease has expired, the
node registers anew with a fresh lease.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import gevent

from coordinator.etcd_client import Etcd, EtcdUnavailable
from mesh.base import metrics

log = logging.getLogger("coordinator.membership")


class DuplicateNodeError(Exception):
    pass


class Membership:
    def __init__(self, etcd: Etcd, node_id: int, info: dict, *, ttl: int, heartbeat: float,
                 probe: Callable[[dict], dict | None], instance: str) -> None:
        self.etcd = etcd
        self.node_id = node_id
        self.info = info
        self.ttl = ttl
        self.heartbeat = min(heartbeat, ttl / 3.0)
        self.probe = probe
        self.instance = instance
        self.key = etcd.key("members", node_id)
        self.lease = None
        self.registered = False
        self.last_refresh = 0.0
        self._greenlet: gevent.Greenlet | None = None
        self._leaving = False
        self._on_session: list[Callable[[bool], None]] = []

    def on_session_change(self, fn: Callable[[bool], None]) -> None:
        self._on_session.append(fn)

    @property
    def session_alive(self) -> bool:
        return self.registered and (time.monotonic() - self.last_refresh) < self.ttl

    def join(self, wait: float | None = None) -> None:
        """Register, waiting up to ``wait`` seconds for a dead predecessor's lease to expire."""
        wait = self.ttl * 2 + 2 if wait is None else wait
        deadline = time.monotonic() + wait
        probed = False
        while True:
            self.lease = self.etcd.grant(self.ttl)
            value = json.dumps(self.info)
            if self.etcd.create(self.key, value, lease=self.lease):
                self.registered = True
                self.last_refresh = time.monotonic()
                self.etcd.delete(self.etcd.key("removed", self.node_id))
                self.etcd.delete(self.etcd.key("draining", self.node_id))
                log.info("joined cluster key=%s lease=%x ttl=%ds", self.key, self.lease.id, self.ttl)
                self._notify(True)
                return
            self.etcd.revoke(self.lease)
            raw, _ = self.etcd.get(self.key)
            holder = json.loads(raw) if raw else {}
            if raw and not probed:
                probed = True
                answer = self.probe(holder)
                if answer and answer.get("node") == self.node_id and answer.get("instance") != self.instance:
                    raise DuplicateNodeError(
                        f"node id {self.node_id} is already alive at {holder.get('serverAddr')} "
                        f"(pid {holder.get('pid')}, started {holder.get('started_at')}); "
                        f"give this node another cluster.nodeId")
                log.warning("node id %s is registered by a previous run that does not answer; "
                            "waiting up to %.0fs for its lease to expire", self.node_id, wait)
            if time.monotonic() > deadline:
                raise DuplicateNodeError(
                    f"node id {self.node_id} stayed registered in etcd for {wait:.0f}s by "
                    f"{holder.get('serverAddr')}; another node with this id seems alive")
            gevent.sleep(0.25)

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._keepalive_loop)

    def _notify(self, alive: bool) -> None:
        metrics.etcd_up.set(1 if alive else 0)
        for fn in self._on_session:
            try:
                fn(alive)
            except Exception:
                log.exception("session listener failed")

    def _keepalive_loop(self) -> None:
        was_alive = True
        while not self._leaving:
            gevent.sleep(self.heartbeat)
            if self._leaving:
                return
            try:
                ttl = self.etcd.refresh(self.lease)
                if ttl > 0:
                    self.last_refresh = time.monotonic()
                else:
                    log.error("etcd lease expired (session lost); registering again")
                    self.registered = False
                    self._notify(False)
                    was_alive = False
                    self.join(wait=self.ttl * 2 + 2)
            except DuplicateNodeError as exc:
                log.error("cannot rejoin: %s", exc)
                gevent.sleep(1)
            except EtcdUnavailable as exc:
                log.warning("etcd lease refresh failed: %s", exc)
            except Exception:
                log.exception("keepalive failed")
            alive = self.session_alive
            if alive != was_alive:
                if not alive:
                    log.error("etcd session lost: no lease refresh for %ds", self.ttl)
                else:
                    log.info("etcd session alive again")
                self._notify(alive)
                was_alive = alive

    def leave(self) -> None:
        """Give up membership now (revoking the lease deletes every key under it)."""
        self._leaving = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        if self.lease is not None and self.registered:
            try:
                self.etcd.revoke(self.lease)
                log.info("left cluster (lease revoked)")
            except EtcdUnavailable as exc:
                log.warning("could not revoke lease on leave (%s); it expires in %ds", exc, self.ttl)
        self.registered = False
        self._notify(False)
