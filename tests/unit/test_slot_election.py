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
    others = [(a, b) for a, b in zip(table.slots, new.slots) if a.id != 5 and a.to_json() != b.to_json()]
    assert len(others) <= 1  # at most one slot of the new leader swapped back to keep the counts even
    for a, b in others:
        assert a.leader == moved.leader and b.leader == s.leader and b.term == a.term + 1
    assert check_invariants(new, {1, 2, 3}) == []


def converged(nodes=(1, 2, 3)):
    table, status = ready_table(nodes)
    for _ in range(100):
        nxt = plan(table, set(nodes), status={s.id: SlotStatus(s.term, s.leader, True, frozenset(s.members()))
                                              for s in table.slots})
        if nxt.version == table.version:
            return table
        table = nxt
    raise AssertionError("plan did not converge")


def test_balancing_does_not_hand_an_elected_slot_back():
    table = converged()
    status = {s.id: SlotStatus(s.term, s.leader, True, frozenset(s.members())) for s in table.slots}
    for s in table.slots:
        new, reason = move_leader(table, s.id, s.leader, {1, 2, 3}, status=status)
        assert new is not None, reason
        counts = new.leader_counts([1, 2, 3])
        assert max(counts.values()) - min(counts.values()) <= 1
        after = plan(new, {1, 2, 3}, status={x.id: SlotStatus(x.term, x.leader, True, frozenset(x.members()))
                                             for x in new.slots})
        assert after.version == new.version and after.slots[s.id].leader != s.leader


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
