"""mesh.storage.sync_placement: when the event loop writes the write-ahead log itself."""
from __future__ import annotations

import random

from mesh.storage.sync_placement import ALPHA, STALL_FACTOR, SyncPlacement

FAST, STALL = 0.0002, 0.05


def feed(p: SyncPlacement, now: float, seconds: float = FAST, n: int = 8) -> None:
    for _ in range(n):
        assert p.observe(seconds, now, p.inline(now)) is False


def test_zero_keeps_every_commit_in_the_pool():
    p = SyncPlacement(0.0)
    feed(p, 1.0, 0.0, 100)
    assert not p.inline(1.0)
    assert p.observe(STALL, 2.0, False) is False  # nothing to announce: it never ran inline


def test_inline_only_after_enough_commits():
    p = SyncPlacement(0.001)
    feed(p, 1.0, n=7)
    assert not p.inline(1.0)
    feed(p, 1.0, n=1)
    assert p.inline(1.0)


def test_the_average_of_the_loops_commits_decides_not_one_commit():
    p = SyncPlacement(0.001, hold=5.0)
    for _ in range(20):
        p.observe(0.002, 1.0, False)  # in the pool: timed with GIL waits, so not averaged
    assert p.inline(1.0)
    for _ in range(10):
        p.observe(FAST, 1.0, True)
    p.observe(0.003, 1.0, True)  # one slow commit (not a stall) moves the average only
    assert p.inline(1.0) and p.average < 0.001
    expected, n = p.average, 1
    while expected <= 0.001:  # slow commits in a row, until the average passes 1 ms
        expected += ALPHA * (0.003 - expected)
        n += 1
    for _ in range(n - 1):
        assert p.inline(1.0)
        p.observe(0.003, 1.0, True)
    assert not p.inline(1.0) and not p.inline(5.9)  # the pool for a hold
    feed(p, 6.0, 0.003, 8)
    assert p.inline(6.0)  # then the loop tries again: a 3 ms commit there sets the average at once
    p.observe(0.003, 6.0, True)
    assert not p.inline(6.0)
    feed(p, 11.0, FAST, 8)
    assert p.inline(11.0)


def test_a_stall_holds_the_pool_then_starts_again():
    p = SyncPlacement(0.001, hold=5.0)
    feed(p, 1.0)
    assert p.inline(1.0)
    assert p.observe(STALL_FACTOR * 0.001 * 1.01, 2.0, True) is True  # announced once
    assert p.observe(STALL, 2.1, False) is False
    feed(p, 3.0, n=20)
    assert not p.inline(7.0)  # still within the hold of the stall at 2.1
    assert p.inline(7.2)
    p.observe(STALL, 8.0, True)
    feed(p, 13.1, n=7)
    assert not p.inline(13.1)  # hold over, but the commits are counted again
    feed(p, 13.1, n=1)
    assert p.inline(13.1)


def test_a_failed_write_is_a_stall():
    p = SyncPlacement(0.001)
    feed(p, 1.0)
    assert p.observe(float("inf"), 1.0, True) is True
    assert not p.inline(1.5)


def test_share_of_each_window_on_the_loop_is_bounded():
    p = SyncPlacement(0.001, max_share=0.25, window=1.0)
    feed(p, 10.0)
    spent = 0.0
    now = 10.0
    while p.inline(now):
        p.observe(0.0009, now, True)
        spent += 0.0009
        now += 0.001
    assert 0.25 <= spent < 0.25 + 0.001 and now < 11.0
    assert not p.inline(10.99)
    assert p.inline(11.0)  # a new window


def test_random_runs_keep_the_rules():
    rnd = random.Random(13)
    for _ in range(200):
        inline_max = rnd.choice([0.0005, 0.001, 0.002])
        p = SyncPlacement(inline_max, hold=rnd.choice([0.5, 5.0]), calm_needed=rnd.randint(1, 10), max_share=0.25)
        now, last_move, seen, average = 0.0, -1e9, 0, None
        windows: dict[float, float] = {}
        for _ in range(500):
            now += rnd.expovariate(200.0)
            inline = p.inline(now)
            if inline:
                assert now >= last_move + p.hold and seen >= p.calm_needed and (average or 0) <= inline_max
                assert windows.get(p.window_start, 0.0) < 0.25
            took = rnd.choice([0.0001, 0.0005, 0.002, 0.004, 0.03, 1.0, float("inf")]) if rnd.random() < 0.1 else 0.0002
            p.observe(took, now, inline)
            if took > STALL_FACTOR * inline_max:
                last_move, seen, average = now, 0, None
            else:
                seen += 1
                if inline:
                    average = took if average is None else average + ALPHA * (took - average)
                    windows[p.window_start] = windows.get(p.window_start, 0.0) + took
                    if average > inline_max:
                        last_move, seen, average = now, 0, None
        assert all(v < 0.25 + 0.02 for v in windows.values())
