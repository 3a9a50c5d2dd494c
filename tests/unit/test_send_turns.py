"""The send path holds no lock or shared reply across slots while it looks up person flags (a remote call).

``Messages._on_send`` runs with a stand-in node: the person-flags lookup of one uid
blocks (its slot is failing over), and the proposal is recorded instead of replicated.
"""
from __future__ import annotations

import time
import types

import gevent
import gevent.event

from mesh.im.messages import Messages


class StubNode:
    def __init__(self, blocked_uid: str, release: gevent.event.Event) -> None:
        self.node_id = 1
        self.router = types.SimpleNamespace(slot_of=lambda key: 0)
        self.cfg = {"cluster.requestTimeout": 5.0, "whitelistOffOfPerson": True}
        self.mesh = types.SimpleNamespace(handle=lambda *a: None, subscribe=lambda *a: None)
        self.replication = types.SimpleNamespace(serving=lambda slot: types.SimpleNamespace(slot=slot))

        def get_many(uids):
            if blocked_uid in uids:
                release.wait()  # the uid's slot has no leader yet: the lookup retries until it has one
            return {}
        self.person_perms = types.SimpleNamespace(get_many=get_many)


def item(slot: int, from_uid: str, channel: str) -> list:
    # [slot, from_uid, channel_id, channel_type, payload, cmn, flags, setting, expire, topic, dflag, cnode, cconn,
    #  system, temp_subs]
    return [slot, from_uid, channel, 2, b"x", f"{from_uid}-{channel}", 0, 0, 0, "", 1, 0, 0, False, None]


def make(blocked_uid: str):
    release = gevent.event.Event()
    msgs = Messages(StubNode(blocked_uid, release))
    proposed: list[tuple[int, str]] = []

    def propose(r, it, perms):
        proposed.append((it[0], it[1]))
        return [0, len(proposed), len(proposed)]
    msgs._propose = propose
    return msgs, release, proposed


def test_a_slow_lookup_for_one_slot_does_not_hold_up_another_slot():
    msgs, release, proposed = make("stuck")
    slow = gevent.spawn(msgs._on_send, 2, [item(5, "stuck", "g1")])
    gevent.sleep(0.01)
    started = time.monotonic()
    fast = gevent.spawn(msgs._on_send, 3, [item(7, "alice", "g2")])
    fast.join(timeout=2)
    took = time.monotonic() - started
    try:
        assert fast.ready(), "a send on slot 7 waited for the person-flags lookup of a send on slot 5"
        assert fast.value == [[0, 1, 1]] and took < 1.0
        assert not slow.ready()
    finally:
        release.set()
    assert slow.get(timeout=2) == [[0, 2, 2]]


def test_one_batch_with_two_slots_answers_the_free_slot_without_waiting_for_the_other():
    msgs, release, proposed = make("stuck")
    batch = gevent.spawn(msgs._on_send, 2, [item(5, "stuck", "g1"), item(7, "alice", "g2")])
    gevent.sleep(0.1)
    try:
        assert proposed == [(7, "alice")]  # slot 7 was proposed while slot 5's lookup waits
    finally:
        release.set()
    assert batch.get(timeout=2) == [[0, 2, 2], [0, 1, 1]]


def test_sends_of_one_slot_keep_their_arrival_order():
    msgs, release, proposed = make("stuck")
    first = gevent.spawn(msgs._on_send, 2, [item(5, "stuck", "g1")])
    second = gevent.spawn(msgs._on_send, 2, [item(5, "bob", "g1")])  # flags cached: no lookup wait
    gevent.sleep(0.1)
    assert proposed == []  # the second waits for the first: same slot
    release.set()
    gevent.joinall([first, second], timeout=2)
    assert proposed == [(5, "stuck"), (5, "bob")]
    assert msgs._slot_turns == {}


def test_the_origin_sends_each_slots_items_as_their_own_request():
    """A msg.send reply waits for every item in it: a stuck slot's send must not share one with another slot's."""
    from mesh.im.messages import _Batcher, _Pending

    sent: list[tuple[int, list[tuple[int, str]]]] = []
    svc = types.SimpleNamespace(_send_batch=lambda leader, batch: sent.append(
        (leader, [(it.slot, it.req) for it in batch])))
    b = _Batcher(svc, 2)
    try:
        for slot, name in [(5, "a"), (7, "b"), (5, "c"), (9, "d"), (7, "e")]:
            b.add(_Pending(name, None, slot, 0.0, False, None))
        gevent.sleep(0.05)
        assert sorted(sent) == [(2, [(5, "a"), (5, "c")]), (2, [(7, "b"), (7, "e")]), (2, [(9, "d")])]
    finally:
        b.greenlet.kill()
