"""b in the shell: one applier per slot (mesh/replication/replica.py ``_apply``).

A leader's side-effect hook that yields (a slow socket) must not let a second
greenlet apply the same entries again or out of order.
"""
from __future__ import annotations

import gevent

from mesh.replication.replica import SlotReplica
from mesh.storage.entries import KIND_MSG


class Host:
    node_id = 1
    store = None

    def session_alive(self) -> bool:
        return True

    def schedule_snapshot(self, replica) -> None:
        pass


def msg(idx: int) -> tuple:
    # [channel, ctype, seq, mid, from, cmn, ts, flags, setting, expire, topic, payload]
    return (idx, 1, KIND_MSG, ["ch", 2, idx, 1000 + idx, "u1", f"c{idx}", 0, 0, 0, 0, "", b"x"])


def test_b_a_blocking_hook_does_not_let_another_greenlet_apply_again():
    r = SlotReplica(Host(), 0)
    r.core.role = "leader"
    seen: list[int] = []
    busy: list[int] = []
    overlaps: list[tuple] = []

    def hook(replica, entry, meta):
        if busy:
            overlaps.append((busy[0], entry[0]))
        busy.append(entry[0])
        seen.append(entry[0])
        if entry[0] == 1:
            gevent.sleep(0.05)  # the first entry's delivery blocks
        busy.remove(entry[0])

    r.apply_hook = hook
    g1 = gevent.spawn(r._apply, [msg(1), msg(2)])
    gevent.sleep(0.01)
    g2 = gevent.spawn(r._apply, [msg(3)])
    gevent.joinall([g1, g2], timeout=5)
    assert seen == [1, 2, 3], seen
    assert not overlaps, f"entries applied while entry {overlaps[0][0]} was still being applied"
    assert r.state.applied == 3
    assert r.core.applied_done == 3
