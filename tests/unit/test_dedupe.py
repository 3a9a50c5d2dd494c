"""The slot's dedupe window: what it remembers, for how long, and that the cycle collector never scans it."""
from __future__ import annotations

import gc

import msgpack

from mesh.im import slot_state
from mesh.im.slot_state import Dedupe


def test_remembers_message_id_and_seq() -> None:
    d = Dedupe()
    d.add("g1", 2, "alice", "c1", 2**62 + 5, 7, 1_700_000_000)
    assert d.get("g1", 2, "alice", "c1") == (2**62 + 5, 7, 1_700_000_000)
    assert d.get("g1", 2, "alice", "c2") is None
    assert d.get("g1", 1, "alice", "c1") is None


def test_keys_do_not_collide_across_field_boundaries() -> None:
    d = Dedupe()
    d.add("ab", 1, "c", "x", 1, 1, 1)
    assert d.get("a", 1, "bc", "x") is None
    assert d.get("ab", 1, "cx", "") is None
    assert d.get("ab", 11, "c", "x") is None


def test_count_window_keeps_between_half_and_all_of_the_limit() -> None:
    d = Dedupe()
    limit = slot_state.DEDUPE_LIMIT
    for i in range(limit * 2 + 3):
        d.add("g", 2, "u", f"m{i}", i, i, 1000)
    newest = limit * 2 + 2
    assert d.get("g", 2, "u", f"m{newest}") is not None
    assert d.get("g", 2, "u", f"m{newest - limit // 2}") is not None  # the last limit/2 always there
    assert d.get("g", 2, "u", "m0") is None  # the oldest dropped
    assert limit // 2 <= len(d) <= limit


def test_time_window_rotates_by_message_time() -> None:
    d = Dedupe()
    half = slot_state.DEDUPE_SECONDS // 2
    d.add("g", 2, "u", "old", 1, 1, 1000)
    d.add("g", 2, "u", "mid", 2, 2, 1000 + half)  # closes the first generation
    assert d.get("g", 2, "u", "old") is not None
    d.add("g", 2, "u", "new", 3, 3, 1000 + 2 * half)  # the generation with "mid" only just started
    d.add("g", 2, "u", "newer", 4, 4, 1000 + 3 * half)  # closes it: the one holding "old" goes
    assert d.get("g", 2, "u", "old") is None
    assert d.get("g", 2, "u", "newer") is not None


def test_holds_nothing_the_cycle_collector_tracks() -> None:
    d = Dedupe()
    for i in range(1000):
        d.add(f"g{i % 7}", 2, f"u{i}", f"c{i}", 2**63 - i, i, 1_700_000_000 + i)
    assert not gc.is_tracked(d.cur) and not gc.is_tracked(d.old)


def test_snapshot_round_trip_through_msgpack_and_old_format() -> None:
    d = Dedupe()
    for i in range(50):
        d.add("g", 2, "u", f"c{i}", 2**63 - 1 - i, i + 1, 1_700_000_000 + i)
    back = Dedupe.from_snap(msgpack.unpackb(msgpack.packb(d.to_snap()), raw=False))
    assert back.cur == d.cur and back.old == d.old and back.cur_first_ts == d.cur_first_ts
    legacy = Dedupe.from_snap([["g", 2, "u", "c1", 9, 3, 1_700_000_000]])
    assert legacy.get("g", 2, "u", "c1") == (9, 3, 1_700_000_000)
