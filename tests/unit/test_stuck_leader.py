"""The controller's pure part of fix a: a live leader that does not serve is moved (slot_table)."""
from __future__ import annotations

from coordinator.slot_table import STUCK_AFTER, SlotInfo, SlotStatus, SlotTable, plan, stuck_slots


def table(leader=1, term=3):
    return SlotTable(version=5, slot_count=2, replica_count=3,
                     slots=[SlotInfo(0, leader=leader, replicas=[1, 2, 3], term=term),
                            SlotInfo(1, leader=2, replicas=[1, 2, 3], term=1)])


READY1 = {1: SlotStatus(term=1, leader=2, ready=True, in_sync=frozenset({1, 2, 3}))}


def test_a_leader_that_never_reports_is_stuck_after_the_bound():
    t, seen = table(), {}
    assert stuck_slots(t, READY1, seen, 100.0, {1, 2, 3}) == set()
    assert stuck_slots(t, READY1, seen, 100.0 + STUCK_AFTER / 2, {1, 2, 3}) == set()
    assert stuck_slots(t, READY1, seen, 100.0 + STUCK_AFTER + 0.1, {1, 2, 3}) == {0}
    recovering = {**READY1, 0: SlotStatus(term=3, leader=1, ready=False)}  # reports progress: trusted
    assert stuck_slots(t, recovering, seen, 200.0, {1, 2, 3}) == set()


def test_a_ready_leader_is_not_stuck_and_a_self_reported_stuck_one_is_at_once():
    t, seen = table(), {}
    ok = {**READY1, 0: SlotStatus(term=3, leader=1, ready=True)}
    assert stuck_slots(t, ok, seen, 0.0, {1, 2, 3}) == set()
    assert stuck_slots(t, ok, seen, 100.0, {1, 2, 3}) == set()
    bad = {**READY1, 0: SlotStatus(term=3, leader=1, ready=True, stuck=True)}
    assert stuck_slots(t, bad, seen, 100.0, {1, 2, 3}) == {0}
    old = {**READY1, 0: SlotStatus(term=2, leader=1, ready=True, stuck=True)}  # an older term's report
    assert stuck_slots(t, old, {}, 100.0, {1, 2, 3}) == set()


def test_plan_moves_a_stuck_slot_to_another_live_voter_at_a_new_term():
    t = table()
    new = plan(t, {1, 2, 3}, status=READY1, positions={0: {2: (3, 10), 3: (3, 12)}}, stuck={0})
    s = new.slots[0]
    assert s.leader == 3 and s.term == 4 and new.version == 6
    assert new.slots[1].leader == 2 and new.slots[1].term == 1


def test_plan_gives_a_lone_stuck_leader_a_new_term():
    t = table()
    new = plan(t, {1}, status=READY1, stuck={0})
    assert new.slots[0].leader == 1 and new.slots[0].term == 4
