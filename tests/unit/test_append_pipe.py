"""The per-peer senders of replication appends: one request per peer for many slots, one append
in flight per slot, per-slot results and refusals, backoff after failures, shared heartbeats."""
from __future__ import annotations

import time

import gevent
import gevent.event
import pytest

from mesh.net import wire
from mesh.net.transport import MeshError, PeerUnreachable, Refused, RemoteError
from mesh.replication.append_pipe import PeerSenders, serve_many


class Slot:
    """A leading replica as the senders see it: ``pending`` entries to send, each reply recorded."""

    def __init__(self, slot: int, pending: int = 1, delay: float = 0.0) -> None:
        self.slot = slot
        self.term = 1
        self.pending = pending
        self.delay = delay
        self.sent: list[tuple[int, int, bool]] = []  # (peer, entries, heartbeat)
        self.results: list = []

    def append_request(self, peer: int, heartbeat: bool):
        if not self.pending and not heartbeat:
            return None
        n, self.pending = self.pending, 0
        self.sent.append((peer, n, heartbeat))
        return wire.Append(self.slot, self.term, 1, 0, 0, [[i] for i in range(n)], 0)

    def on_append_result(self, peer: int, req, reply) -> float:
        self.results.append(reply)
        return self.delay if isinstance(reply, Exception) else 0.0


def until(cond, timeout: float = 5.0) -> None:
    """Wait (yielding) until ``cond()`` holds; generous, so a loaded machine does not fail the test."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.01)


def follower(sender, req):
    slot = req[0]
    if slot == 113:
        raise Refused("not_member", slot)
    if slot == 114:
        raise ValueError("boom")
    gevent.sleep(0.01)
    return {"ok": True, "slot": slot, "from": sender}


def test_one_request_for_every_woken_slot_and_per_slot_results():
    calls = []

    def request(peer, method, reqs, timeout):
        calls.append((peer, method, [r[0] for r in reqs]))
        return serve_many(follower, 1, reqs)

    senders = PeerSenders(request, heartbeat=60)
    slots = [Slot(s) for s in list(range(20)) + [113, 114]]
    for s in slots:
        senders.lead(s, {2})
    until(lambda: all(s.results for s in slots))
    assert calls == [(2, "repl.append_many", [s.slot for s in slots])]
    for s in slots[:20]:
        assert s.results == [{"ok": True, "slot": s.slot, "from": 1}]
    assert isinstance(slots[20].results[0], RemoteError) and slots[20].results[0].code == "not_member"
    assert isinstance(slots[21].results[0], RemoteError) and "boom" in str(slots[21].results[0])
    senders.close()


def test_one_append_in_flight_per_slot_and_its_sender_sends_what_follows():
    calls = []
    gate = gevent.event.Event()

    def request(peer, method, reqs, timeout):
        calls.append([(r[0], len(r[5])) for r in reqs])
        if len(calls) == 1:
            gate.wait()  # the first append stays in flight until the test has woken the slot 3 times
        return [{"ok": True} for _ in reqs]

    senders = PeerSenders(request, heartbeat=60)
    a = Slot(1)
    senders.lead(a, {2})
    until(lambda: calls)
    for _ in range(3):
        a.pending += 1
        senders.wake(a)
        gevent.sleep(0.01)
    assert calls == [[(1, 1)]], "nothing more is sent while the slot's append is in flight"
    gate.set()
    until(lambda: len(a.results) == 2)
    gevent.sleep(0.05)
    assert calls == [[(1, 1)], [(1, 3)]]
    senders.close()


@pytest.mark.parametrize("exc, seen", [
    (PeerUnreachable("node 3 is not a live member"), PeerUnreachable),
    # not a MeshError: a bug, not the network; the slots must not stay busy for good
    (TypeError("cannot pack"), MeshError),
], ids=["transport", "unexpected"])
def test_a_failed_request_reaches_every_slot_and_each_retries_after_its_backoff(exc, seen):
    calls = []

    def request(peer, method, reqs, timeout):
        calls.append(len(reqs))
        if len(calls) == 1:
            raise exc
        return [{"ok": True} for _ in reqs]

    senders = PeerSenders(request, heartbeat=60)
    slots = [Slot(s, delay=1.0) for s in range(5)]
    for s in slots:
        senders.lead(s, {3})
    until(lambda: all(s.results for s in slots))
    failed_at = time.monotonic()
    assert calls == [5]
    assert all(type(s.results[0]) is seen for s in slots), [s.results[0] for s in slots]
    for s in slots:
        s.pending = 1  # what failed is sent again once the backoff is over
        senders.wake(s)
    gevent.sleep(0.1)
    if time.monotonic() - failed_at < 0.9:
        assert calls == [5], "a slot waits out its backoff"
    until(lambda: all(len(s.results) == 2 for s in slots))
    assert calls[0] == 5 and sum(calls[1:]) == 5, calls  # (a loaded machine may fire the 5 backoffs apart)
    assert all(s.results[1] == {"ok": True} for s in slots)
    senders.close()


def test_heartbeats_of_all_slots_to_a_peer_are_one_request_per_tick():
    calls = []

    def request(peer, method, reqs, timeout):
        calls.append((peer, len(reqs)))
        return [{"ok": True} for _ in reqs]

    senders = PeerSenders(request, heartbeat=0.05)
    slots = [Slot(s, pending=0) for s in range(10)]
    for s in slots:
        senders.lead(s, {2, 3})
    until(lambda: calls.count((2, 10)) >= 3 and calls.count((3, 10)) >= 3)
    assert set(calls) == {(2, 10), (3, 10)}, "every tick: one request per peer with all 10 slots"
    assert all(hb for s in slots for _p, _n, hb in s.sent)
    senders.unlead(slots[0])
    gevent.sleep(0.1)
    calls.clear()
    until(lambda: len(calls) >= 4)
    assert calls[-2:] in ([(2, 9), (3, 9)], [(3, 9), (2, 9)]), "a slot no longer led is no longer carried"
    senders.close()


def test_a_peer_no_slot_is_led_to_any_more_loses_its_sender_and_gets_a_new_one_when_led_again():
    def request(peer, method, reqs, timeout):
        return serve_many(follower, 1, reqs)

    senders = PeerSenders(request, heartbeat=0.05)
    a, b = Slot(1), Slot(2)
    senders.lead(a, {2, 3})
    senders.lead(b, {2, 3})
    until(lambda: len(a.results) >= 2 and len(b.results) >= 2)
    old = senders._peers[3].greenlet
    senders.lead(a, {2})  # node 3 left: every slot stops replicating to it
    senders.lead(b, {2})
    until(lambda: 3 not in senders._peers and old.dead)
    assert set(senders._peers) == {2} and not senders._peers[2].greenlet.dead
    sent = len([s for s in a.sent if s[0] == 3])
    gevent.sleep(0.2)  # several heartbeat ticks: nothing more goes to node 3
    assert len([s for s in a.sent if s[0] == 3]) == sent
    senders.lead(a, {2, 3})  # node 3 is back
    until(lambda: len([s for s in a.sent if s[0] == 3]) > sent)
    assert not senders._peers[3].greenlet.dead
    senders.close()
