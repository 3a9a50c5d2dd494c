"""The node's client gateway: every local session, the uid index, logins, kicks and timers.

Owns the sessions of this node (``conn id -> Session``) and the index of authenticated
ones by uid, which delivery uses to find local recipients. After a login it applies
WuKongIM's device rules on every node (a broadcast over the mesh): a master-level
login kicks the uid's older connections with the same device flag (DISCONNECT 12,
closed 2 s later), a slave-level login only replaces a connection with the same device
id. A sweeper closes connections that sent no CONNECT within ``conn.authTimeout``,
idle ones after ``conn.idleTimeout``, stalled half frames after
``conn.partialFrameTimeout``, clients whose oldest unwritten frame is older than
``conn.outboundMaxDelay``, and resends RECVs not acknowledged. It remembers the
CMD channel of recent CMD RECVs (by message id) so that a master device's RECVACK with
the SyncOnce flag can move the uid's CMD read position (``on_sync_once_ack``).

Admission: at most ``conn.maxConnections`` connections per node and
``conn.maxConnectionsPerIp`` per client address (refused at accept: closed without a
byte); every SEND takes a token from its connection's bucket (``limits.connSendRate``)
and its uid's (``limits.uidSendRate``, counted across nodes through Redis by
``coordinator.rate_counts``); the manager uid is exempt. Refusals are counted in
``skein_send_rate_limited_total`` and logged once per offender per minute.

Delivery: the messaging layer hands committed messages to ``deliver_later`` (the
commit path and the mesh's broadcast loop only enqueue); one delivery greenlet builds
each recipient session's RECV and queues it on the session, which writes without
waiting (a batch of messages leaves each session in one write).
"""
from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import gevent
import gevent.event

from gateway import jsonrpc
from gateway import wkproto as wk
from gateway.admission import KeyedLimiter, LogThrottle, Offence, TokenBucket
from gateway.ports import DEVICE_LEVEL_MASTER, Authenticator, AuthResult, Delivery, MessageSink, SendRequest
from gateway.session import AUTHED, CLOSED, MANAGER_UID, NEW, Session
from mesh.base import metrics
from mesh.net import wire

log = logging.getLogger("gateway")

KICK_TEXT = "login in other device"
CMD_RECVS_MAX = 10000  # recent CMD RECVs remembered for their RECVACK


class Gateway:
    def __init__(self, node_id: int, cfg, authenticator: Authenticator, sink: MessageSink,
                 publish: Callable[[str, object], None] | None = None) -> None:
        self.node_id = node_id
        self.authenticator = authenticator
        self.sink = sink
        self.publish = publish
        self.cfg_token_auth = cfg["tokenAuthOn"]
        self.cfg_manager_token = cfg["managerToken"]
        self.cfg_disable_encryption = cfg["disableEncryption"]
        self.cfg_disable_jsonrpc = cfg["disableJSONRPC"]
        self.cfg_visitors_suffix = cfg["customerService.visitorsSuffix"]
        self.auth_timeout = cfg["conn.authTimeout"]
        self.idle_timeout = cfg["conn.idleTimeout"]
        self.partial_timeout = cfg["conn.partialFrameTimeout"]
        self.max_connections = cfg["conn.maxConnections"]
        self.max_pending_frames = cfg["conn.maxPendingFrames"]
        self.max_pending_sends = cfg["conn.maxPendingSends"]
        self.node_max_pending_sends = cfg["limits.nodePendingSends"]
        self.pending_sends = 0  # SENDs of all sessions waiting for their outcome
        self.max_per_ip = cfg["conn.maxConnectionsPerIp"]
        self.ip_exempt = frozenset(cfg["conn.ipLimitExempt"])
        self.conn_rate = cfg["limits.connSendRate"]
        self.conn_burst = cfg["limits.connSendBurst"]
        self.grace = cfg["limits.graceSeconds"]
        self.uid_limiter = KeyedLimiter(cfg["limits.uidSendRate"], cfg["limits.uidSendBurst"])
        self.per_ip: dict[str, int] = {}
        self.log_throttle = LogThrottle(60.0)
        self._pruned = 0.0
        self.out_max_bytes = cfg["conn.outboundMaxBytes"]
        self.out_max_delay = cfg["conn.outboundMaxDelay"]
        self.retry_interval = cfg["messageRetry.interval"]
        self.retry_max = cfg["messageRetry.maxCount"]
        self.retry_scan = cfg["messageRetry.scanInterval"]
        self.sessions: dict[int, Session] = {}
        self.by_uid: dict[str, list[Session]] = {}
        self._retrying: set[Session] = set()
        self._ids = itertools.count(1)
        self._greenlets: list[gevent.Greenlet] = []
        self.online_listeners: list[Callable[[Session, bool], None]] = []
        self.counts = {"tcp": [0, 0], "ws": [0, 0]}  # [unauthenticated, authenticated]
        self.accepting = True
        self._deliveries: list[tuple[Delivery, Iterable[str], tuple[int, int] | None]] = []
        self._delivery_wake = gevent.event.Event()
        self.cmd_recvs: OrderedDict[int, tuple[str, int, int]] = OrderedDict()  # mid -> (CMD channel, type, seq)
        self.on_sync_once_ack: Callable[[str, str, int, int], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._sweep_loop), gevent.spawn(self._retry_loop),
                           gevent.spawn(self._delivery_loop)]

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)
        self.drain("node stopping")

    def drain(self, why: str = "node draining") -> None:
        """Refuse new connections and close the open ones (clients reconnect to another node)."""
        self.accepting = False
        for s in list(self.sessions.values()):
            s.close(why)

    # ------------------------------------------------------------------ sessions
    def open(self, transport) -> Session | None:
        if not self.accepting:
            metrics.gw_rejected.labels("draining").inc()
            return None
        if len(self.sessions) >= self.max_connections:
            metrics.gw_rejected.labels("too_many_connections").inc()
            n = self.log_throttle.hit("node-connections", time.monotonic())
            if n is not None:
                log.warning("refusing connections (from %s and %d more since the last line): %d connections open "
                            "(conn.maxConnections); logged once a minute", getattr(transport, "remote", "?"), n - 1,
                            len(self.sessions))
            return None
        ip = ip_of(getattr(transport, "remote", ""))
        if self.max_per_ip and self.per_ip.get(ip, 0) >= self.max_per_ip and ip not in self.ip_exempt:
            metrics.gw_rejected.labels("too_many_connections_per_ip").inc()
            if self.log_throttle.hit("ip:" + ip, time.monotonic()) is not None:
                log.warning("refusing connections from %s: %d open from that address (conn.maxConnectionsPerIp); "
                            "logged once a minute", ip, self.per_ip.get(ip, 0))
            return None
        s = Session(self, transport, next(self._ids))
        self.sessions[s.conn_id] = s
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        self._count(s.transport.kind, 0, +1)
        return s

    def _count(self, kind: str, authed: int, delta: int) -> None:
        c = self.counts[kind]
        c[authed] += delta
        metrics.gw_connections.labels(kind, "authenticated" if authed else "connecting").set(c[authed])

    def on_authenticated(self, s: Session) -> None:
        self._count(s.transport.kind, 0, -1)
        self._count(s.transport.kind, 1, +1)
        metrics.gw_connects.labels(s.transport.kind, "1").inc()
        if s.uid != MANAGER_UID:
            s.offence = Offence(self.grace)
            if self.conn_rate > 0:
                s.bucket = TokenBucket(self.conn_rate, self.conn_burst, time.monotonic())
        self.by_uid.setdefault(s.uid, []).append(s)
        login = [s.uid, s.device_flag, s.device_id, s.device_level, self.node_id, s.conn_id]
        self.apply_login(login)
        if self.publish is not None:
            self.publish(wire.GW_LOGIN, login)
        for fn in self.online_listeners:
            try:
                fn(s, True)
            except Exception:
                log.exception("online listener failed")

    def on_closed(self, s: Session, was_authed: bool) -> None:
        if self.sessions.pop(s.conn_id, None) is not None:
            ip = ip_of(s.remote)
            n = self.per_ip.get(ip, 0) - 1
            if n > 0:
                self.per_ip[ip] = n
            else:
                self.per_ip.pop(ip, None)
        self._retrying.discard(s)
        self._count(s.transport.kind, 1 if was_authed else 0, -1)
        if was_authed:
            lst = self.by_uid.get(s.uid)
            if lst is not None:
                try:
                    lst.remove(s)
                except ValueError:
                    pass
                if not lst:
                    del self.by_uid[s.uid]
            for fn in self.online_listeners:
                try:
                    fn(s, False)
                except Exception:
                    log.exception("offline listener failed")

    def authenticate(self, uid: str, device_flag: int, token: str) -> AuthResult:
        try:
            return self.authenticator.authenticate(uid, device_flag, token)
        except Exception as exc:
            log.warning("token check for uid=%s failed: %s", uid, exc)
            return AuthResult(wk.REASON_SYSTEM_ERROR)

    def submit(self, req: SendRequest, done) -> None:
        metrics.messages_in.inc()
        try:
            self.sink.submit(req, done)
        except Exception:
            log.exception("messaging layer refused a SEND from uid=%s", req.from_uid)
            from gateway.ports import SendResult
            done(SendResult(wk.REASON_SYSTEM_ERROR))

    # ------------------------------------------------------------------ send admission
    def admit_send(self, s: Session) -> bool:
        """Take a token from the connection's and the uid's bucket; False (counted, logged) when either is empty."""
        if s.uid == MANAGER_UID:
            return True
        now = time.monotonic()
        scope = ""
        if s.bucket is not None and not s.bucket.take(now):
            scope = "connection"
        elif not self.uid_limiter.take(s.uid, now):
            scope = "uid"
        if not scope:
            return True
        metrics.send_rate_limited.labels(scope).inc()
        n = self.log_throttle.hit("uid:" + s.uid, now)
        if n is not None:
            log.warning("rate limit: SENDs of uid=%s refused with reason 22 (%s limit; conn=%s remote=%s); "
                        "%d refusal(s) since the last line, logged once a minute", s.uid, scope, s.conn_id,
                        s.remote, n)
        return False

    def refused_read_delay(self, s: Session) -> float:
        """How long a connection that was just refused waits before its next read (slows a flooder's input)."""
        now = time.monotonic()
        wait = s.bucket.wait_time(now) if s.bucket is not None else 0.0
        wait = max(wait, self.uid_limiter.wait_time(s.uid, now))
        return min(1.0, max(0.1, wait))

    def rate_limit_kick(self, s: Session) -> None:
        """The client kept sending over its limit past the grace period: DISCONNECT 22, then close."""
        metrics.gw_rejected.labels("rate_limit").inc()
        n = self.log_throttle.hit("kick:" + s.uid, time.monotonic())
        if n is not None:
            log.warning("rate limit: disconnecting uid=%s conn=%s remote=%s, still over its send limit after %.0fs "
                        "(%d disconnect(s) of this uid since the last line, logged once a minute)", s.uid, s.conn_id,
                        s.remote, self.grace, n)
        s.kick(wk.REASON_RATE_LIMIT, "rate limit exceeded", 0.5)

    # ------------------------------------------------------------------ logins and kicks
    def apply_login(self, login: list) -> None:
        """Kick the local sessions a login replaces (runs on every node for every login)."""
        uid, device_flag, device_id, level, node, conn = login
        for other in list(self.by_uid.get(uid, ())):
            if other.device_flag != device_flag or (node == self.node_id and other.conn_id == conn):
                continue
            if other.state != AUTHED:
                continue
            if level == DEVICE_LEVEL_MASTER:
                metrics.gw_kicks.inc()
                if other.device_id != device_id:
                    other.kick(wk.REASON_CONNECT_KICK, KICK_TEXT, 2.0)
                else:
                    self.close_later(other, 2.0, "replaced by a new login of the same device")
            elif other.device_id == device_id:
                metrics.gw_kicks.inc()
                self.close_later(other, 2.0, "replaced by a new login of the same device")

    def kick_uid(self, uid: str, device_flags: Iterable[int] | None, delay: float, text: str = KICK_TEXT) -> int:
        """DISCONNECT 12 to a uid's local sessions (all flags, or only ``device_flags``), close after delay."""
        n = 0
        flags = None if device_flags is None else set(device_flags)
        for s in list(self.by_uid.get(uid, ())):
            if flags is None or s.device_flag in flags:
                s.kick(wk.REASON_CONNECT_KICK, text, delay)
                metrics.gw_kicks.inc()
                n += 1
        return n

    def close_later(self, s: Session, delay: float, why: str) -> None:
        gevent.spawn_later(delay, s.close, why, logging.INFO)

    # ------------------------------------------------------------------ delivery
    def deliver_later(self, m: Delivery, uids: Iterable[str], exclude: tuple[int, int] | None = None) -> None:
        """Queue ``m`` for this node's sessions of ``uids``; the delivery greenlet writes it.

        The commit path and the mesh's broadcast loop call this, so neither ever waits on
        a client (nor spends its time building RECVs).
        """
        self._deliveries.append((m, uids, exclude))
        if len(self._deliveries) == 1:
            self._delivery_wake.set()

    def _delivery_loop(self) -> None:
        while True:
            self._delivery_wake.wait()
            self._delivery_wake.clear()
            while self._deliveries:
                batch, self._deliveries = self._deliveries, []
                try:
                    self.deliver_batch(batch)
                except Exception:
                    log.exception("delivery of %d message(s) failed", len(batch))

    def deliver_batch(self, batch: list) -> int:
        """Deliver several messages; each session's frames go out in one write at the end."""
        if len(batch) == 1:
            m, uids, exclude = batch[0]
            return self.deliver(m, uids, exclude)
        corked: list[Session] = []
        written = 0
        try:
            for m, uids, exclude in batch:
                written += self.deliver(m, uids, exclude, corked)
        finally:
            for s in corked:
                s.uncork()
        return written

    def deliver(self, m: Delivery, uids: Iterable[str], exclude: tuple[int, int] | None = None,
                corked: list[Session] | None = None) -> int:
        """Write ``m`` to every local session of ``uids`` (except the sending connection).

        With ``corked``, sessions only queue (and are added to the list) until the caller flushes them.
        """
        written = 0
        cache: dict = {}
        by_uid = self.by_uid
        now = time.time()
        for uid in uids:
            sessions = by_uid.get(uid)
            if not sessions:
                continue
            for s in sessions:
                if exclude is not None and exclude[0] == self.node_id and exclude[1] == s.conn_id:
                    continue
                if corked is not None and s._corked is None:
                    s.cork()
                    corked.append(s)
                s.deliver(m, cache)
                written += 1
        if written:
            self._messages_out.v += written
            cmd = m.extra.get("cmd") if m.extra else None
            if cmd is not None:
                self.cmd_recvs[m.message_id] = (cmd[0], cmd[1], m.message_seq)
                if len(self.cmd_recvs) > CMD_RECVS_MAX:
                    self.cmd_recvs.popitem(last=False)
            if m.committed_at:
                metrics.delivery_latency.observe(max(0.0, now - m.committed_at))
        return written

    # ------------------------------------------------------------------ writers
    def start_writer(self, s: Session) -> None:
        """A session's socket did not take everything: its own greenlet waits and writes the rest."""
        gevent.spawn(s.drain)

    def close_transport_later(self, s: Session, delay: float) -> None:
        gevent.spawn_later(delay, s._close_transport)

    def count_slow(self, s: Session, limit: str) -> None:
        metrics.gw_rejected.labels("slow_client").inc()
        metrics.gw_slow_clients.labels(limit).inc()

    # ------------------------------------------------------------------ message events
    def deliver_event(self, uids: Iterable[str], event_id: str, event_type: str, timestamp: int, data: str) -> int:
        """A message event to the local sessions of ``uids``: EVENT (type 12) to binary v5 connections, the
        ``event`` notification to JSON-RPC ones; binary connections below v5 (which may not know type 12) get
        nothing."""
        written = 0
        frame = None
        note = None
        for uid in uids:
            for s in self.by_uid.get(uid, ()):
                if s.state != AUTHED:
                    continue
                if s.dialect == "json":
                    if note is None:
                        note = jsonrpc.dumps(jsonrpc.notification("event", {"id": event_id, "type": event_type,
                                                                            "timestamp": timestamp, "data": data}))
                    s.write_frame(note, text=True)
                elif s.version >= 5:
                    if frame is None:
                        frame = wk.encode(wk.Event(event_id, event_type, timestamp, data.encode()), 5)
                    s.write_frame(frame)
                else:
                    continue
                written += 1
        return written

    def sync_once_acked(self, s: Session, message_id: int) -> None:
        hit = self.cmd_recvs.get(message_id)
        if hit is not None and self.on_sync_once_ack is not None and s.uid:
            self.on_sync_once_ack(s.uid, *hit)

    def local_sessions(self, uid: str) -> list[Session]:
        return list(self.by_uid.get(uid, ()))

    # ------------------------------------------------------------------ timers
    def _sweep_loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            try:
                self.sweep(time.monotonic())
            except Exception:
                log.exception("sweep failed")

    def sweep(self, now: float) -> None:
        metrics.gw_pending_sends.set(self.pending_sends)
        if now - self._pruned > 30:
            self._pruned = now
            self.uid_limiter.prune(now)
            self.log_throttle.prune(now)
        for s in list(self.sessions.values()):
            out = s._out
            if out and now - out.times[0] > self.out_max_delay:
                s.too_slow("age", now)
                continue
            if s.state == NEW:
                if now - s.created > self.auth_timeout:
                    s.reject("auth_timeout", f"no CONNECT within {self.auth_timeout:.0f}s")
            elif s.state == AUTHED:
                if s.paused or s.backlog:
                    s.last_recv = now  # the node is not reading it (admission): the client is not idle
                    continue
                idle = now - s.last_recv
                if idle > self.idle_timeout:
                    metrics.gw_rejected.labels("idle_timeout").inc()
                    s.close(f"idle for {idle:.0f}s", logging.INFO)
                elif s.decoder is not None and s.decoder.pending and idle > self.partial_timeout:
                    s.reject("stalled_frame", f"half a frame pending for {idle:.0f}s", wk.REASON_PAYLOAD_DECODE_ERROR)

    def _retry_loop(self) -> None:
        while True:
            gevent.sleep(self.retry_scan)
            now = time.monotonic()
            for s in list(self._retrying):
                try:
                    s.resend_due(now)
                except Exception:
                    log.exception("resend failed conn=%s", s.conn_id)

    def retry_started(self, s: Session) -> None:
        self._retrying.add(s)

    def retry_done(self, s: Session) -> None:
        self._retrying.discard(s)

    # ------------------------------------------------------------------ metrics hooks (called per frame)
    # Labelled children are looked up once: ``.labels()`` on every frame costs more than the count.
    _bytes_in = {k: metrics.gw_bytes_in.labels(k) for k in ("tcp", "ws")}
    _bytes_out = {k: metrics.gw_bytes_out.labels(k) for k in ("tcp", "ws")}
    _frames_out = {k: metrics.gw_frames_out.labels(k) for k in ("tcp", "ws")}
    _frames_in = {t: metrics.gw_frames_in.labels(name) for t, name in wk.TYPE_NAMES.items()}
    _messages_out = metrics.messages_out.labels()

    def metrics_bytes_in(self, s: Session, n: int) -> None:
        self._bytes_in[s.transport.kind].v += n

    def metrics_bytes_out(self, s: Session, n: int) -> None:
        kind = s.transport.kind
        self._bytes_out[kind].v += n
        self._frames_out[kind].v += 1

    def metrics_frame_in(self, s: Session, ptype: int) -> None:
        self._frames_in[ptype].v += 1

    def metrics_json_in(self, s: Session, method: str) -> None:
        metrics.gw_frames_in.labels("json:" + (method if method in ("connect", "send", "recvack", "ping",
                                                                      "disconnect") else "other")).v += 1

    def count_reject(self, s: Session | None, kind: str) -> None:
        metrics.gw_rejected.labels(kind).inc()

    def count_retry(self) -> None:
        metrics.gw_recv_retries.inc()

    def count_retry_exhausted(self) -> None:
        metrics.gw_recv_retry_exhausted.inc()

    def observe_send_latency(self, seconds: float) -> None:
        metrics.send_latency.observe(seconds)

    # ------------------------------------------------------------------ introspection
    def stats(self) -> dict:
        return {"connections": len(self.sessions),
                "authenticated": sum(c[1] for c in self.counts.values()),
                "tcp": self.counts["tcp"][1], "ws": self.counts["ws"][1], "uids": len(self.by_uid)}

    def all_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.state != CLOSED]


def ip_of(remote: str) -> str:
    """The address part of ``host:port`` (IPv6 in brackets or bare)."""
    host, sep, _port = remote.rpartition(":")
    if not sep:
        return remote
    return host.strip("[]")
