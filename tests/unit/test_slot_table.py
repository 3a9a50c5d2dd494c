"""Unit tests of the slot planner (pure logic, no I/O)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.slot_table import (
    SlotStatus,
    SlotTable,
    check_invariants,
    plan,
    slot_of,
)


def fresh_table(nodes, slots=64, r=3):
    return plan(SlotTable.empty(slots, r), nodes, fresh=True)


def all_ready(table, lagging=()):
    """Every slot leader reports ready, with every member in sync except ``lagging``."""
    return {s.id: SlotStatus(s.term, s.leader, True,
                             frozenset(m for m in s.members() if m not in lagging))
            for s in table.slots if s.leader}


def converge(table, live, rounds=400, **kw):
    """Run the controller loop with leaders that are always ready and in sync."""
    history = [table]
    for _ in range(rounds):
        nxt = plan(table, live, status=all_ready(table), **kw)
        history.append(nxt)
        if nxt.version == table.version:
            return nxt, history
        table = nxt
    raise AssertionError("plan did not converge")


def leader_spread(table, nodes):
    c = table.leader_counts(nodes)
    return max(c[n] for n in nodes) - min(c[n] for n in nodes)


def test_slot_of_matches_crc32_rule():
    import zlib
    assert slot_of("u1@u2", 64) == zlib.crc32(b"u1@u2") % 64
    assert slot_of("group1", 64) == zlib.crc32(b"group1") % 64
    assert slot_of("", 64) == 0


def test_fresh_three_nodes_balanced_full_replicas():
    t = fresh_table([1, 2, 3])
    assert not check_invariants(t, [1, 2, 3])
    assert all(sorted(s.replicas) == [1, 2, 3] and not s.learners for s in t.slots)
    assert leader_spread(t, [1, 2, 3]) <= 1
    assert sorted(t.leader_counts([1, 2, 3]).values()) == [21, 21, 22]
    assert t.version == 1


def test_stable_table_is_a_fixed_point():
    t = fresh_table([1, 2, 3])
    again = plan(t, [1, 2, 3], status=all_ready(t))
    assert again.version == t.version and again.same_layout(t)


def test_json_round_trip():
    t = fresh_table([1, 2, 3])
    assert SlotTable.from_bytes(t.to_bytes()).same_layout(t)


def test_leader_death_moves_only_its_slots_and_keeps_voters():
    t = fresh_table([1, 2, 3])
    led_by_3 = set(t.slots_led_by(3))
    t2 = plan(t, [1, 2], status=all_ready(t))
    assert not check_invariants(t2, [1, 2])
    for a, b in zip(t.slots, t2.slots):
        assert b.replicas == a.replicas  # the dead voter stays until replaced
        if a.id in led_by_3:
            assert b.leader in (1, 2) and b.term == a.term + 1
        else:
            assert b.leader == a.leader and b.term == a.term
    assert leader_spread(t2, [1, 2]) <= 1


def test_new_leader_is_most_up_to_date_voter():
    t = fresh_table([1, 2, 3])
    s = t.slots_led_by(3)[0]
    positions = {s: {1: (1, 10), 2: (1, 12)}}
    t2 = plan(t, [1, 2], positions=positions)
    assert t2.slots[s].leader == 2
    positions = {s: {1: (2, 3), 2: (1, 12)}}  # a higher term wins over a longer log
    assert plan(t, [1, 2], positions=positions).slots[s].leader == 1


def test_restarted_node_gets_leaders_back_only_when_in_sync():
    t = fresh_table([1, 2, 3])
    t2 = plan(t, [1, 2], status=all_ready(t))
    # Back, but still catching up: no leadership moves to it.
    t3 = plan(t2, [1, 2, 3], status=all_ready(t2, lagging={3}))
    assert t3.leader_counts([1, 2, 3])[3] == 0
    # Once in sync the leaders rebalance with the fewest moves.
    t4, _ = converge(t3, [1, 2, 3])
    assert leader_spread(t4, [1, 2, 3]) <= 1
    moved = sum(1 for a, b in zip(t3.slots, t4.slots) if a.leader != b.leader)
    assert moved == 21


def test_slots_not_ready_do_not_change_voters():
    t = fresh_table([1, 2, 3])
    t2 = plan(t, [1, 2, 3, 4], status={})  # nobody reported: nothing may move
    for a, b in zip(t.slots, t2.slots):
        assert a.replicas == b.replicas and a.leader == b.leader


def one_voter_change_per_round(history):
    for a, b in zip(history, history[1:]):
        for x, y in zip(a.slots, b.slots):
            assert len(set(x.replicas) ^ set(y.replicas)) <= 1, (x, y)


def test_fourth_node_joins_gets_fair_share():
    t = fresh_table([1, 2, 3])
    final, history = converge(t, [1, 2, 3, 4])
    one_voter_change_per_round(history)
    assert not check_invariants(final, [1, 2, 3, 4])
    members = final.member_counts([1, 2, 3, 4])
    assert max(members.values()) - min(members.values()) <= 1
    assert sum(members.values()) == 64 * 3
    assert leader_spread(final, [1, 2, 3, 4]) <= 1
    assert all(len(s.replicas) == 3 and not s.learners for s in final.slots)


def test_copies_are_bounded():
    t = fresh_table([1, 2, 3])
    t2 = plan(t, [1, 2, 3, 4], status=all_ready(t), max_copies=5)
    assert sum(1 for s in t2.slots if s.learners) <= 5


def test_drain_hands_everything_over():
    t, _ = converge(fresh_table([1, 2, 3]), [1, 2, 3, 4])
    final, history = converge(t, [1, 2, 3, 4], draining=[4])
    one_voter_change_per_round(history)
    assert final.slots_of(4) == []
    assert leader_spread(final, [1, 2, 3]) <= 1
    assert all(sorted(s.replicas) == [1, 2, 3] for s in final.slots)


def test_drain_in_three_node_cluster_shrinks_to_two():
    final, _ = converge(fresh_table([1, 2, 3]), [1, 2, 3], draining=[3])
    assert final.slots_of(3) == []
    assert all(sorted(s.replicas) == [1, 2] for s in final.slots)


def test_dead_voter_replaced_when_a_spare_exists():
    t, _ = converge(fresh_table([1, 2, 3]), [1, 2, 3, 4])
    final, history = converge(t, [1, 2, 3])  # node 4 died
    one_voter_change_per_round(history)
    assert final.slots_of(4) == []
    assert all(len(s.replicas) == 3 for s in final.slots)


def test_dead_voter_kept_without_spare_and_removed_on_request():
    t = fresh_table([1, 2, 3])
    final, _ = converge(t, [1, 2])
    assert all(3 in s.replicas for s in final.slots)  # no spare: keep it for its return
    final2, _ = converge(final, [1, 2], removed=[3])
    assert final2.slots_of(3) == []


def test_all_voters_dead_leaves_slot_leaderless():
    t = plan(SlotTable.empty(4, 1), [1, 2], fresh=True)
    dead = t.slots[0].leader
    alive = 3 - dead
    t2 = plan(t, [alive], status=all_ready(t))
    assert t2.slots[0].leader == 0
    assert t2.slots[0].replicas == [dead]  # never replaced by an empty replica


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sets(st.integers(1, 5), min_size=1), min_size=1, max_size=12),
       st.integers(1, 3), st.booleans())
def test_random_membership_histories_keep_invariants(lives, r, lag):
    t = plan(SlotTable.empty(16, r), [1, 2, 3], fresh=True)
    for live in lives:
        status = all_ready(t, lagging={max(live)} if lag else ())
        t2 = plan(t, live, status=status)
        for x, y in zip(t.slots, t2.slots):
            assert len(set(x.replicas) ^ set(y.replicas)) <= 1
            if y.leader:
                assert y.leader in y.replicas and y.leader in live
            if (y.leader != x.leader and y.leader) or y.replicas != x.replicas:
                assert y.term > x.term
            assert y.term >= x.term
            # a slot never loses every voter that could hold its data
            assert y.replicas, y
        t = t2


def test_step_down_moves_leaders_but_keeps_replicas():
    t = fresh_table([1, 2, 3])
    final, _ = converge(t, [1, 2, 3], no_lead=[2])
    assert final.leader_counts([1, 2, 3])[2] == 0
    assert leader_spread(final, [1, 3]) <= 1
    assert all(sorted(s.replicas) == [1, 2, 3] for s in final.slots)
    back, _ = converge(final, [1, 2, 3])  # restarted: leads again
    assert leader_spread(back, [1, 2, 3]) <= 1
