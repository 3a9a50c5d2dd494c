"""Unit tests of ``move_leader``: an operator's slot election (pure logic, no I/O)."""
from __future__ import annotations

from coordinator.slot_table import SlotStatus, SlotTable, check_invariants, move_leader, plan


def ready_table(nodes=(1, 2, 3)):
    table = plan(SlotTable.empty(16, 3), nodes, fresh=True)
    status = {s.id: SlotStatus(s.term, s.leader, True, frozenset(s.members())) for s in table.slots}
    return table, status


def test_moves_to_an_in_sync_voter_with_a_term_bump():
    table, status = ready_table()
    s = table.slots[5]
    new, reason = move_leader(table, 5, s.leader, {1, 2, 3}, status=status)
    assert reason == "" and new is not None
    moved = new.slots[5]
    assert moved.leader != s.leader and moved.leader in s.replicas
    assert moved.term == s.term + 1 and new.version == table.version + 1
    assert sorted(moved.replicas) == sorted(s.replicas)
    assert all(a.to_json() == b.to_json() for a, b in zip(table.slots, new.slots) if a.id != 5)
    assert check_invariants(new, {1, 2, 3}) == []


def test_refuses_when_not_the_leader_not_ready_or_nobody_in_sync():
    table, status = ready_table()
    s = table.slots[3]
    other = next(n for n in (1, 2, 3) if n != s.leader)
    assert move_leader(table, 3, other, {1, 2, 3}, status=status)[0] is None
    stale = dict(status)
    stale[3] = SlotStatus(s.term, s.leader, False, frozenset(s.members()))
    new, reason = move_leader(table, 3, s.leader, {1, 2, 3}, status=stale)
    assert new is None and "established" in reason
    lagging = dict(status)
    lagging[3] = SlotStatus(s.term, s.leader, True, frozenset({s.leader}))
    new, reason = move_leader(table, 3, s.leader, {1, 2, 3}, status=lagging)
    assert new is None and "in sync" in reason
    assert move_leader(table, 99, s.leader, {1, 2, 3}, status=status)[0] is None


def test_skips_dead_and_stepping_down_voters():
    table, status = ready_table()
    s = table.slots[7]
    a, b = (n for n in s.replicas if n != s.leader)
    new, _ = move_leader(table, 7, s.leader, {1, 2, 3} - {a}, status=status)
    assert new.slots[7].leader == b
    new, _ = move_leader(table, 7, s.leader, {1, 2, 3}, status=status, no_lead={b})
    assert new.slots[7].leader == a
