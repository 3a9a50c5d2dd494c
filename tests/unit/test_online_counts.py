"""Cluster-wide online counts kept by a slot leader (mesh.im.online_counts)."""
from __future__ import annotations

from mesh.im.online_counts import OnlineCounts


def test_counts_over_nodes_and_flags():
    c = OnlineCounts()
    assert c.needs_seed(3, 1, "u")
    c.seed(3, 1, "u", [])
    assert c.apply(3, 1, "u", 1, 10, 1, True) == (1, 1)
    assert c.apply(3, 1, "u", 3, 10, 1, True) == (2, 2)  # same conn id on another node is another connection
    assert c.apply(3, 1, "u", 3, 11, 0, True) == (1, 3)
    assert c.apply(3, 1, "u", 1, 10, 1, False) == (1, 2)
    assert c.apply(3, 1, "u", 1, 10, 1, False) == (1, 2)  # a repeated logout changes nothing
    assert c.apply(3, 1, "u", 3, 11, 0, True) == (1, 2)  # a repeated login neither
    assert not c.needs_seed(3, 1, "u")


def test_seed_from_presence_then_events():
    c = OnlineCounts()
    c.seed(0, 5, "u", [(1, 7, 1), (2, 8, 0)])
    assert c.apply(0, 5, "u", 2, 9, 1, True) == (2, 3)
    c.seed(0, 5, "u", [])  # a later (concurrent) seed does not overwrite what events built
    assert c.apply(0, 5, "u", 1, 7, 1, False) == (1, 2)
    # the event's own connection already in presence is not counted twice
    c.seed(0, 5, "v", [(4, 1, 1)])
    assert c.apply(0, 5, "v", 4, 1, 1, True) == (1, 1)


def test_new_term_starts_over():
    c = OnlineCounts()
    c.seed(2, 1, "u", [])
    c.apply(2, 1, "u", 1, 1, 1, True)
    assert c.needs_seed(2, 2, "u")  # leadership changed: the old table is not trusted
    c.seed(2, 2, "u", [(1, 1, 1), (3, 4, 1)])
    assert c.apply(2, 2, "u", 2, 5, 1, True) == (3, 3)
    assert c.needs_seed(7, 2, "u")  # other slots have their own tables


def test_dead_nodes_are_dropped():
    c = OnlineCounts()
    c.seed(1, 1, "u", [(1, 1, 1), (2, 1, 1), (3, 1, 1)])
    assert c.apply(1, 1, "u", 1, 2, 1, True, alive={1, 3}) == (3, 3)


def test_forget_empty():
    c = OnlineCounts()
    c.seed(1, 1, "u", [])
    c.seed(1, 1, "w", [])
    c.apply(1, 1, "u", 1, 1, 1, True)
    c.apply(1, 1, "u", 1, 1, 1, False)
    c.apply(1, 1, "w", 1, 2, 1, True)
    assert c.size() == 2 and c.forget_empty(1) == 1 and c.forget_empty(9) == 0
    assert c.needs_seed(1, 1, "u") and not c.needs_seed(1, 1, "w")
