"""Rebuilding a lost slot table from the replicas' reports (coordinator/table_rebuild.py)."""
from __future__ import annotations

from coordinator.slot_table import check_invariants, plan
from coordinator.table_rebuild import Holding, NodeReport, has_data, rebuild


def report(version: int, slots: dict[int, tuple[int, int, int]]) -> NodeReport:
    return NodeReport(version, {s: Holding(*h) for s, h in slots.items()})


def test_new_cluster_has_no_data():
    reports = {1: report(0, {}), 2: report(0, {})}
    assert not has_data(reports)
    assert has_data({1: report(0, {}), 2: report(0, {3: (0, 0, 0), 4: (2, 2, 7)})})


def test_rebuild_keeps_holders_terms_above_every_replica_and_version_up():
    # 4 slots, replicas on nodes 1-3; node 3 is behind on slot 0 and knows a higher term on slot 1
    reports = {
        1: report(7, {0: (5, 5, 100), 1: (3, 3, 40), 2: (2, 2, 9), 3: (4, 4, 12)}),
        2: report(9, {0: (5, 5, 100), 1: (3, 3, 40), 2: (2, 2, 9), 3: (4, 4, 12)}),
        3: report(8, {0: (5, 4, 60), 1: (6, 3, 40), 2: (2, 2, 9), 3: (4, 4, 11)}),
    }
    table, problems = rebuild(reports, slot_count=4, replica_count=3)
    assert problems == []
    assert table.version == 10  # above every version any node saw
    for s in table.slots:
        assert sorted(s.replicas) == [1, 2, 3]
        assert s.learners == []
        assert s.leader in s.replicas
    assert table.slots[0].leader in (1, 2)  # never the replica that lacks entries 61..100
    assert table.slots[0].term == 6
    assert table.slots[1].term == 7  # node 3 promised term 6: the new term is above it
    assert table.slots[3].leader in (1, 2)
    assert check_invariants(table, {1, 2, 3}) == []


def test_leader_is_the_most_up_to_date_holder():
    reports = {1: report(1, {0: (3, 2, 50)}), 2: report(1, {0: (3, 3, 20)}), 3: report(1, {0: (3, 3, 19)})}
    table, _ = rebuild(reports, slot_count=1, replica_count=3)
    assert table.slots[0].leader == 2  # last term 3 beats a longer log of term 2
    assert table.slots[0].replicas[0] == 2


def test_extra_holders_beyond_replica_count_are_left_out_least_up_to_date_first():
    reports = {n: report(1, {0: (2, 2, 10 + n)}) for n in range(1, 6)}
    table, _ = rebuild(reports, slot_count=1, replica_count=3)
    assert table.slots[0].replicas == [5, 4, 3]
    assert table.slots[0].leader == 5


def test_refuses_when_a_slot_is_held_by_nobody():
    reports = {1: report(3, {0: (1, 1, 5)}), 2: report(3, {0: (1, 1, 5)})}
    table, problems = rebuild(reports, slot_count=2, replica_count=3)
    assert table is None
    assert any("held by no live node: [1]" in p for p in problems)


def test_refuses_when_only_a_minority_of_replicas_report_a_slot():
    reports = {1: report(3, {0: (1, 1, 5), 1: (1, 1, 5)}), 2: report(3, {0: (1, 1, 5)})}
    table, problems = rebuild(reports, slot_count=2, replica_count=3)
    assert table is None
    assert any("fewer than 2" in p and "[1]" in p for p in problems)


def test_empty_replicas_do_not_count_as_holders():
    reports = {1: report(3, {0: (1, 1, 5)}), 2: report(3, {0: (0, 0, 0)}), 3: report(3, {0: (1, 1, 5)})}
    table, _ = rebuild(reports, slot_count=1, replica_count=3)
    assert sorted(table.slots[0].replicas) == [1, 3]


def test_two_of_three_holders_then_plan_adds_the_third_as_learner_not_voter():
    reports = {1: report(3, {0: (2, 2, 5)}), 2: report(3, {0: (2, 2, 5)}), 3: report(3, {})}
    table, problems = rebuild(reports, slot_count=1, replica_count=3)
    assert problems == []
    assert sorted(table.slots[0].replicas) == [1, 2]
    nxt = plan(table, {1, 2, 3})
    s = nxt.slots[0]
    assert 3 not in s.replicas and s.learners == [3]  # it copies the data before it may vote
    assert s.leader == table.slots[0].leader and s.term == table.slots[0].term


def test_equally_up_to_date_holders_share_the_leaderships():
    reports = {n: report(1, {s: (2, 2, 10) for s in range(6)}) for n in (1, 2, 3)}
    table, _ = rebuild(reports, slot_count=6, replica_count=3)
    assert table.leader_counts() == {1: 2, 2: 2, 3: 2}
