"""Node-to-node transport over ZeroMQ: addressed requests and sequenced broadcast.

Each node binds a ROUTER (requests from peers) and a PUB (broadcast). Toward every
live peer it keeps a DEALER (its requests, and the replies to them) and one SUB socket
connected to every peer's PUB. Frames are msgpack.

* Requests: ``request(peer, method, payload)`` blocks the calling greenlet until the
  peer's handler answers, the timeout passes, or the peer is known to be unreachable.
  A request to this node itself calls the handler directly.
* Broadcast: ``publish(kind, payload)`` stamps a per-sender sequence number. Receivers
  notice a gap (including at the tail, from the heartbeat that carries the last
  number), count it, and fetch the missing messages from the sender's replay buffer
  over ROUTER/DEALER before going on, so handlers see each sender's messages in order.
  What the sender no longer has is counted as lost.

Uses plain pyzmq sockets the hybrid way (``mesh.net.zsock``): every send is NOBLOCK,
and each socket's one receiving greenlet drains what is queued before it waits on the
socket's file descriptor. Batching happens above this layer too, so most chat messages
cost one mesh message per peer.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import msgpack
import zmq

from mesh.base import metrics
from mesh.net import wire
from mesh.net.zsock import Receiver

log = logging.getLogger("mesh.net.transport")

HEARTBEAT = wire.HEARTBEAT
_STATUS_OK = 0
_STATUS_ERROR = 1
_STATUS_NO_METHOD = 2
_STATUS_REFUSED = 3


class MeshError(Exception):
    pass


class PeerUnreachable(MeshError):
    pass


class RequestTimeout(MeshError):
    pass


class RemoteError(MeshError):
    """The peer's handler failed; ``code`` tells refusals (for example not-leader) apart."""

    def __init__(self, code: str, detail: Any = None) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class Refused(Exception):
    """Raised by a request handler to answer with a typed refusal instead of a crash."""

    def __init__(self, code: str, detail: Any = None) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


@dataclass
class PeerAddr:
    router: str  # host:port
    pub: str  # host:port


@dataclass
class _PubState:
    instance: str
    last: int
    last_heartbeat: float


def _tcp(addr: str) -> str:
    return addr if addr.startswith("tcp://") else f"tcp://{addr}"


def _bind_addr(addr: str) -> str:
    host, _, port = addr.rpartition(":")
    return f"tcp://{host or '0.0.0.0'}:{port}"


pack = msgpack.Packer(use_bin_type=True).pack
_children: dict[tuple, Any] = {}


def _counter(metric, *labels):
    """A metric's labelled child, looked up once (``.labels()`` per message is costly)."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Mesh:
    def __init__(self, node_id: int, router_addr: str, pub_addr: str, *, hwm: int = 100000,
                 replay_size: int = 20000, request_timeout: float = 5.0,
                 heartbeat_interval: float = 1.0, curve: dict | None = None) -> None:
        self.node_id = node_id
        self.instance = os.urandom(6).hex()
        self.router_addr = router_addr
        self.pub_addr = pub_addr
        self.hwm = hwm
        self.request_timeout = request_timeout
        self.heartbeat_interval = heartbeat_interval
        self.curve = curve or {}
        self.ctx = zmq.Context()
        self.router = None
        self.pub = None
        self.sub = None
        self._router_rx: Receiver | None = None
        self._sub_rx: Receiver | None = None
        self.peers: dict[int, PeerAddr] = {}
        self._dealers: dict[int, Receiver] = {}  # toward each peer: its DEALER socket is ``.sock``
        self._dealer_loops: dict[int, gevent.Greenlet] = {}
        self._handlers: dict[str, Callable[[int, Any], Any]] = {}
        self._subscribers: dict[str, list[Callable[[int, Any], None]]] = {}
        self._pending: dict[int, tuple[gevent.event.AsyncResult, int]] = {}
        self._req_ids = itertools.count(1)
        self._pub_seq = 0
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=replay_size)
        self._pubstate: dict[int, _PubState] = {}
        self._greenlets: list[gevent.Greenlet] = []
        self._closed = False
        self.zap = None
        self._heard: dict[int, float] = {}  # peer -> last time anything arrived from it
        self.handle(wire.PING, self._on_ping)
        self.handle(wire.PUB_REPLAY, self._on_replay)

    # ------------------------------------------------------------------ setup
    def _secure(self, sock, server: bool) -> None:
        """CURVE on every node-to-node socket when the cluster has keys."""
        if not self.curve:
            return
        sock.curve_secretkey = self.curve["secret"]
        sock.curve_publickey = self.curve["public"]
        if server:
            sock.curve_server = True
        else:
            sock.curve_serverkey = self.curve["server"]

    def bind(self) -> None:
        """Bind ROUTER and PUB (so peers can reach this node before it joins)."""
        if self.curve:
            from mesh.net.curve import ZapHandler

            self.zap = ZapHandler(self.ctx, self.curve["public"])
            self.zap.start()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.RCVHWM, self.hwm)
        self.router.setsockopt(zmq.SNDHWM, self.hwm)
        self._secure(self.router, server=True)
        self.router.bind(_bind_addr(self.router_addr))
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, self.hwm)
        self._secure(self.pub, server=True)
        self.pub.bind(_bind_addr(self.pub_addr))
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, self.hwm)
        self._secure(self.sub, server=False)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._router_rx = Receiver(self.router, multipart=True)
        self._sub_rx = Receiver(self.sub)

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._router_loop), gevent.spawn(self._sub_loop),
                           gevent.spawn(self._heartbeat_loop)]

    def close(self) -> None:
        self._closed = True
        gevent.killall(self._greenlets + list(self._dealer_loops.values()), block=False)
        for ar, _peer in list(self._pending.values()):
            ar.set_exception(PeerUnreachable("mesh closed"))
        for rx in [self._router_rx, self._sub_rx, *self._dealers.values()]:
            if rx is not None:
                rx.close()
        if self.pub is not None:
            self.pub.close(linger=0)
        if self.zap is not None:
            self.zap.stop()
        self.ctx.destroy(linger=0)

    # ------------------------------------------------------------------ peers
    def set_peers(self, peers: dict[int, PeerAddr]) -> None:
        """Open sockets to new peers and close those to peers that left."""
        peers = {pid: addr for pid, addr in peers.items() if pid != self.node_id}
        for pid in list(self.peers):
            if pid not in peers or peers[pid] != self.peers[pid]:
                self._drop_peer(pid)
        for pid, addr in peers.items():
            if pid not in self.peers:
                self._add_peer(pid, addr)
        metrics.mesh_peers.set(len(self.peers))

    def _add_peer(self, pid: int, addr: PeerAddr) -> None:
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.setsockopt(zmq.SNDHWM, self.hwm)
        dealer.setsockopt(zmq.RCVHWM, self.hwm)
        dealer.setsockopt(zmq.IDENTITY, f"{self.node_id}:{self.instance}".encode())
        self._secure(dealer, server=False)
        dealer.connect(_tcp(addr.router))
        self.sub.connect(_tcp(addr.pub))
        self._sub_rx.poke()
        self.peers[pid] = addr
        rx = self._dealers[pid] = Receiver(dealer)
        self._dealer_loops[pid] = gevent.spawn(self._dealer_loop, pid, rx)
        log.info("peer added peer=%s router=%s pub=%s", pid, addr.router, addr.pub)

    def _drop_peer(self, pid: int) -> None:
        addr = self.peers.pop(pid)
        loop = self._dealer_loops.pop(pid, None)
        if loop is not None:
            loop.kill(block=False)
        rx = self._dealers.pop(pid, None)
        if rx is not None:
            rx.close()
        try:
            self.sub.disconnect(_tcp(addr.pub))
        except zmq.ZMQError:
            pass
        self._sub_rx.poke()
        self._pubstate.pop(pid, None)
        for ar, peer in list(self._pending.values()):
            if peer == pid:
                ar.set_exception(PeerUnreachable(f"node {pid} left"))
        log.info("peer removed peer=%s", pid)

    def ever_heard(self, pid: int) -> bool:
        """Whether anything (a broadcast, a reply) has arrived from ``pid`` over the mesh."""
        return pid == self.node_id or pid in self._heard

    def last_heartbeat(self, pid: int) -> float | None:
        st = self._pubstate.get(pid)
        return st.last_heartbeat if st else None

    # ------------------------------------------------------------------ requests
    def handle(self, method: str, fn: Callable[[int, Any], Any]) -> None:
        self._handlers[method] = fn

    def request(self, peer: int, method: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Call ``method`` on ``peer`` and return its result (blocks this greenlet)."""
        timeout = self.request_timeout if timeout is None else timeout
        if peer == self.node_id:
            return self._call_local(method, payload)
        rx = self._dealers.get(peer)
        if rx is None:
            metrics.mesh_requests.labels(method, "unreachable").inc()
            raise PeerUnreachable(f"node {peer} is not a live member")
        rid = next(self._req_ids)
        ar: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._pending[rid] = (ar, peer)
        started = time.perf_counter()
        try:
            try:
                rx.sock.send(pack([rid, method, payload]), zmq.NOBLOCK)
            except zmq.Again:
                metrics.mesh_requests.labels(method, "unreachable").inc()
                raise PeerUnreachable(f"node {peer} is not connected") from None
            rx.poke()
            try:
                status, result = ar.get(timeout=timeout)
            except gevent.Timeout:
                metrics.mesh_requests.labels(method, "timeout").inc()
                raise RequestTimeout(f"{method} to node {peer} timed out after {timeout:.1f}s") from None
        finally:
            self._pending.pop(rid, None)
        _counter(metrics.mesh_request_seconds, method).observe(time.perf_counter() - started)
        if status == _STATUS_OK:
            _counter(metrics.mesh_requests, method, "ok").inc()
            return result
        metrics.mesh_requests.labels(method, "error").inc()
        if status == _STATUS_REFUSED:
            raise RemoteError(result[0], result[1])
        raise RemoteError("error" if status == _STATUS_ERROR else "no_method", result)

    def _call_local(self, method: str, payload: Any) -> Any:
        fn = self._handlers.get(method)
        if fn is None:
            raise RemoteError("no_method", method)
        try:
            return fn(self.node_id, payload)
        except Refused as exc:
            raise RemoteError(exc.code, exc.detail) from None

    def _router_loop(self) -> None:
        while True:
            try:
                frames = self._router_rx.recv_many()
            except zmq.ZMQError:
                if self._closed:
                    return
                log.exception("router receive failed")
                gevent.sleep(0.1)
                continue
            for ident, body in frames:
                try:
                    rid, method, payload = unpack(body)
                except Exception:
                    log.warning("dropped a malformed request frame")
                    continue
                gevent.spawn(self._serve, ident, rid, method, payload)

    def _serve(self, ident: bytes, rid: int, method: str, payload: Any) -> None:
        try:
            sender = int(ident.split(b":", 1)[0])
        except ValueError:
            sender = 0
        fn = self._handlers.get(method)
        if fn is None:
            reply = [rid, _STATUS_NO_METHOD, method]
            metrics.mesh_handled.labels("unknown", "no_method").inc()
        else:
            try:
                reply = [rid, _STATUS_OK, fn(sender, payload)]
                _counter(metrics.mesh_handled, method, "ok").inc()
            except Refused as exc:
                reply = [rid, _STATUS_REFUSED, [exc.code, exc.detail]]
                metrics.mesh_handled.labels(method, "refused").inc()
            except Exception as exc:
                log.exception("handler %s failed for request from node %s", method, sender)
                reply = [rid, _STATUS_ERROR, f"{type(exc).__name__}: {exc}"]
                metrics.mesh_handled.labels(method, "error").inc()
        try:
            self.router.send_multipart([ident, pack(reply)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # a ROUTER drops at its high-water mark; Again is a guard
            if not self._closed:
                log.warning("reply to %s failed: %s", ident, exc)
            return
        self._router_rx.poke()

    def _dealer_loop(self, pid: int, rx: Receiver) -> None:
        while True:
            try:
                bodies = rx.recv_many()
            except zmq.ZMQError:
                return
            self._heard[pid] = time.monotonic()
            for body in bodies:
                try:
                    rid, status, result = unpack(body)
                except Exception:
                    log.warning("dropped a malformed reply from node %s", pid)
                    continue
                entry = self._pending.get(rid)
                if entry is not None:
                    entry[0].set((status, result))

    def _on_ping(self, sender: int, payload: Any) -> dict:
        return {"node": self.node_id, "instance": self.instance, "ts": time.time()}

    def ping(self, peer: int, timeout: float = 1.0) -> float:
        """Round trip to ``peer`` in seconds (raises MeshError if it does not answer)."""
        started = time.perf_counter()
        self.request(peer, wire.PING, None, timeout=timeout)
        rtt = time.perf_counter() - started
        metrics.mesh_rtt_seconds.labels(str(peer)).set(rtt)
        return rtt

    def probe(self, router_addr: str, timeout: float = 1.0) -> dict | None:
        """Ping whoever listens at ``router_addr`` (not yet a peer); None if nobody answers."""
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, f"0:probe{os.urandom(4).hex()}".encode())
        self._secure(dealer, server=False)
        dealer.connect(_tcp(router_addr))
        rx = Receiver(dealer)
        try:
            try:
                dealer.send(pack([0, wire.PING, None]), zmq.NOBLOCK)  # queued until connected
            except zmq.Again:
                return None
            rx.poke()
            with gevent.Timeout(timeout, False):
                _rid, status, result = unpack(rx.recv_many()[0])
                return result if status == _STATUS_OK else None
            return None
        finally:
            rx.close()

    # ------------------------------------------------------------------ broadcast
    def subscribe(self, kind: str, fn: Callable[[int, Any], None]) -> None:
        self._subscribers.setdefault(kind, []).append(fn)

    def publish(self, kind: str, payload: Any, local: bool = True) -> None:
        """Broadcast to every peer (and to this node's own subscribers when ``local``)."""
        self._pub_seq += 1
        data = pack([self.node_id, self.instance, self._pub_seq, kind, payload])
        self._replay.append((self._pub_seq, data))
        try:
            self.pub.send(data, zmq.NOBLOCK)
        except zmq.Again:  # PUB drops rather than blocks; this is only a guard
            pass
        _counter(metrics.mesh_pub_sent, kind).inc()
        if local:
            self._dispatch(self.node_id, kind, payload)

    def publish_remote(self, kind: str, payload: Any) -> None:
        """Broadcast to every peer only (this node has already acted on it)."""
        self.publish(kind, payload, local=False)

    def _on_replay(self, sender: int, payload: Any) -> list[bytes]:
        want = wire.PubReplay(*payload)
        return [data for seq, data in self._replay if want.first <= seq <= want.upto]

    def _heartbeat_loop(self) -> None:
        while True:
            gevent.sleep(self.heartbeat_interval)
            try:
                self.pub.send(pack([self.node_id, self.instance, self._pub_seq, HEARTBEAT, time.time()]),
                              zmq.NOBLOCK)
            except zmq.Again:
                pass
            except zmq.ZMQError:
                if self._closed:
                    return

    def _sub_loop(self) -> None:
        while True:
            try:
                frames = self._sub_rx.recv_many()
            except zmq.ZMQError:
                if self._closed:
                    return
                gevent.sleep(0.1)
                continue
            for data in frames:
                try:
                    sender, instance, seq, kind, payload = unpack(data)
                except Exception:
                    log.warning("dropped a malformed broadcast frame")
                    continue
                try:
                    self._on_pub(sender, instance, seq, kind, payload)
                except Exception:
                    log.exception("broadcast handling failed kind=%s from=%s", kind, sender)

    def _on_pub(self, sender: int, instance: str, seq: int, kind: str, payload: Any) -> None:
        if sender not in self.peers:
            return
        self._heard[sender] = time.monotonic()
        st = self._pubstate.get(sender)
        if st is None or st.instance != instance:
            # First message from this sender (or it restarted): that is the baseline.
            st = _PubState(instance, seq if kind == HEARTBEAT else seq - 1, time.time())
            self._pubstate[sender] = st
        if kind == HEARTBEAT:
            st.last_heartbeat = time.time()
            if seq > st.last:
                self._recover(sender, st, seq)
            return
        if seq <= st.last:
            return  # already seen through a replay
        if seq > st.last + 1:
            self._recover(sender, st, seq - 1)
        st.last = seq
        _counter(metrics.mesh_pub_received, kind).inc()
        self._dispatch(sender, kind, payload)

    def _recover(self, sender: int, st: _PubState, upto: int) -> None:
        first = st.last + 1
        missing = upto - first + 1
        peer = str(sender)
        metrics.mesh_pub_gaps.labels(peer).inc(missing)
        log.warning("broadcast gap from node %s: seq %d..%d missing; fetching", sender, first, upto)
        got: list[bytes] = []
        try:
            got = self.request(sender, wire.PUB_REPLAY, wire.PubReplay(first, upto), timeout=2.0)
        except MeshError as exc:
            log.warning("could not fetch missing broadcast from node %s: %s", sender, exc)
        recovered = 0
        for data in got:
            _s, instance, seq, kind, payload = unpack(data)
            if instance != st.instance or seq <= st.last or seq > upto:
                continue
            st.last = seq
            recovered += 1
            metrics.mesh_pub_received.labels(kind).inc()
            self._dispatch(sender, kind, payload)
        metrics.mesh_pub_recovered.labels(peer).inc(recovered)
        if recovered < missing:
            metrics.mesh_pub_lost.labels(peer).inc(missing - recovered)
            log.error("broadcast from node %s: %d message(s) lost (no longer in its buffer)",
                      sender, missing - recovered)
        st.last = max(st.last, upto)

    def _dispatch(self, sender: int, kind: str, payload: Any) -> None:
        for fn in self._subscribers.get(kind, ()):
            try:
                fn(sender, payload)
            except Exception:
                log.exception("subscriber of %s failed", kind)
