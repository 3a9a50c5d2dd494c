"""Carries the replication appends of every slot a node leads to each follower node.

One sender greenlet per follower node (``PeerSenders``), not one per slot and
follower: a leading replica registers the peers it replicates to (``lead``) and
says when it has something new (``wake``); the peer's loop asks each woken slot for
its next append (``SlotReplica.append_request``) and sends all of them as one
``repl.append_many``. On the heartbeat tick it asks every slot it carries, so
all of a node's heartbeats to a peer are one request. Each slot has at most one
append in flight to a peer; the greenlet that sent a batch steps each slot with
its reply and sends those slots' next appends itself, so a burst of messages on a
slot costs no further wake of the loop. Several batches may be in flight, so no
slot waits for another slot's reply; a slot whose append failed waits out its
backoff on its own. A peer's sender ends once no slot is carried to it and none
of its appends is in flight or backing off (the node left, or the leaders moved).

The follower side (``serve_many``) runs the appends of a batch concurrently, so
they share one group commit of its store, and answers with one reply listing each
slot's result or refusal. Per slot the semantics are those of ``repl.append``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.event

from mesh.net import wire
from mesh.net.transport import MeshError, Refused, RemoteError
from mesh.storage.log_store import StoreError

log = logging.getLogger("mesh.replication.append_pipe")

MAX_BATCH = 256
HEARTBEAT = 0.3
APPEND_TIMEOUT = 5.0
RETRY_AFTER_ERROR = 0.5


class Leading(Protocol):
    """What a sender needs of a slot it carries (``SlotReplica`` implements it)."""

    slot: int
    term: int

    def append_request(self, peer: int, heartbeat: bool) -> Any:
        """The slot's next append to ``peer`` (a ``wire.Append``), or None."""

    def on_append_result(self, peer: int, req: Any, reply: Any) -> float:
        """Step the slot with ``peer``'s reply (a dict, or the ``MeshError``); seconds to wait before the next."""


class _Peer:
    __slots__ = ("node", "slots", "dirty", "busy", "event", "greenlet")

    def __init__(self, node: int) -> None:
        self.node = node
        self.slots: dict[int, Leading] = {}  # slot -> the replica leading it here
        self.dirty: set[int] = set()  # slots that may have something to send
        self.busy: dict[int, int] = {}  # slot -> term of its append in flight
        self.event = gevent.event.Event()
        self.greenlet: gevent.Greenlet | None = None


class PeerSenders:
    """This node's senders of replication appends, one greenlet per follower node (see the module)."""

    def __init__(self, request: Callable[..., Any], heartbeat: float = HEARTBEAT,
                 timeout: float = APPEND_TIMEOUT) -> None:
        self._request = request
        self.heartbeat = heartbeat
        self.timeout = timeout
        self._peers: dict[int, _Peer] = {}
        self._led: dict[int, tuple[Leading, list[_Peer]]] = {}  # slot -> (replica, its peers)
        self._closed = False

    def lead(self, replica: Leading, peers: set[int]) -> None:
        """``replica`` leads its slot here and replicates to ``peers`` (replacing an earlier set)."""
        self.unlead(replica, only_same=False)
        mine = [self._peer(n) for n in sorted(peers)]
        self._led[replica.slot] = (replica, mine)
        for p in mine:
            p.slots[replica.slot] = replica
        self.wake(replica)

    def unlead(self, replica: Leading, only_same: bool = True) -> None:
        """``replica`` no longer leads here: its slot is no longer carried."""
        led = self._led.get(replica.slot)
        if led is None or (only_same and led[0] is not replica):
            return
        del self._led[replica.slot]
        for p in led[1]:
            if p.slots.get(replica.slot) is led[0]:
                del p.slots[replica.slot]
                p.dirty.discard(replica.slot)

    def wake(self, replica: Leading) -> None:
        """``replica`` has something new (entries, a commit, a recovered follower): send soon."""
        led = self._led.get(replica.slot)
        if led is None or led[0] is not replica:
            return
        for p in led[1]:
            p.dirty.add(replica.slot)
            p.event.set()

    def close(self) -> None:
        self._closed = True
        gevent.killall([p.greenlet for p in self._peers.values() if p.greenlet is not None], block=False)

    def _peer(self, node: int) -> _Peer:
        p = self._peers.get(node)
        if p is None:
            p = self._peers[node] = _Peer(node)
        if (p.greenlet is None or p.greenlet.dead) and not self._closed:
            p.greenlet = gevent.spawn(self._loop, p)
        return p

    def _loop(self, p: _Peer) -> None:
        hb = self.heartbeat
        # on a tick this greenlet asks every slot it carries: all of them go in one request
        next_beat = (time.monotonic() // hb + 1) * hb
        while True:
            if not p.slots and not p.busy:  # no slot is led to this node any more (it left, or leaders moved)
                if self._peers.get(p.node) is p:
                    del self._peers[p.node]  # a later lead() to it starts a new sender
                return
            if not p.dirty:
                p.event.clear()
                wait = next_beat - time.monotonic()
                if wait > 0:
                    p.event.wait(timeout=wait + 0.001)
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                next_beat = (now // hb + 1) * hb
                slots = list(p.slots)
            else:
                slots = list(p.dirty)
            p.dirty.clear()
            batch = self._requests(p, slots, beat)
            for i in range(0, len(batch), MAX_BATCH):
                gevent.spawn(self._send, p, batch[i:i + MAX_BATCH])

    def _requests(self, p: _Peer, slots: list[int], beat: bool) -> list[tuple[Leading, Any]]:
        """The next append of each of ``slots`` that has none in flight to ``p``; marks them busy."""
        batch = []
        for slot in slots:
            r = p.slots.get(slot)
            if r is None or p.busy.get(slot) == r.term:
                continue  # one in flight: the greenlet that sent it sends what follows
            try:
                req = r.append_request(p.node, beat)
            except Exception:  # noqa: BLE001 - a slot that cannot build its append must not stop the others
                log.exception("slot %d: building the append to node %s failed; retrying in %.1f s", slot, p.node,
                              RETRY_AFTER_ERROR)
                self._hold(p, r, r.term, RETRY_AFTER_ERROR)
                continue
            if req is not None:
                p.busy[slot] = req.term
                batch.append((r, req))
        return batch

    def _send(self, p: _Peer, batch: list[tuple[Leading, Any]]) -> None:
        """Send ``batch``, step each slot with its reply, and go on with what those slots have next."""
        while batch:
            try:
                replies: list = self._request(p.node, wire.REPL_APPEND_MANY, [list(req) for _r, req in batch],
                                              timeout=self.timeout)
                if len(replies) != len(batch):
                    raise MeshError(f"{len(replies)} replies to {len(batch)} appends")
            except MeshError as exc:
                replies = [exc] * len(batch)
            except Exception as exc:  # noqa: BLE001 - a bug here must not leave the batch's slots busy for good
                log.exception("sending %d append(s) to node %s failed", len(batch), p.node)
                replies = [MeshError(f"sending the appends failed: {type(exc).__name__}: {exc}")] * len(batch)
            again = []
            for (r, req), reply in zip(batch, replies):
                if isinstance(reply, list):  # [code, detail] of a refusal or failure of this slot's append
                    reply = RemoteError(reply[0], reply[1])
                try:
                    delay = r.on_append_result(p.node, req, reply)
                except StoreError:
                    delay = 0.05  # logged by the replica; its core starts over
                except Exception:  # noqa: BLE001 - one slot's fault must not leave the batch's others busy
                    log.exception("slot %d: handling the append reply of node %s failed", r.slot, p.node)
                    delay = RETRY_AFTER_ERROR
                if p.busy.get(r.slot) == req.term:
                    del p.busy[r.slot]
                if p.slots.get(r.slot) is not r:
                    continue
                if delay:
                    self._hold(p, r, req.term, delay)
                else:
                    again.append(r.slot)
            batch = self._requests(p, again, False)

    def _hold(self, p: _Peer, r: Leading, term: int, delay: float) -> None:
        """Send nothing more of ``r`` to ``p`` for ``delay`` seconds (a backoff after a failure)."""
        p.busy[r.slot] = term
        gevent.spawn_later(delay, self._retry, p, r, term)

    def _retry(self, p: _Peer, r: Leading, term: int) -> None:
        if p.busy.get(r.slot) == term:
            del p.busy[r.slot]
        if p.slots.get(r.slot) is r:
            p.dirty.add(r.slot)
            p.event.set()


def serve_many(one: Callable[[int, list], Any], sender: int, reqs: list) -> list:
    """Run ``one(sender, req)`` for every request concurrently; each reply, or [code, detail]."""
    def run(req: list) -> Any:
        try:
            return one(sender, req)
        except Refused as exc:
            return [exc.code, exc.detail]
        except Exception as exc:  # noqa: BLE001 - reported to the leader like repl.append's errors
            return ["error", f"{type(exc).__name__}: {exc}"]
    if len(reqs) == 1:  # the common case at low rates: this request's greenlet serves it
        return [run(reqs[0])]
    jobs = [gevent.spawn(run, req) for req in reqs]
    gevent.joinall(jobs)
    return [j.value for j in jobs]
