"""The DuckDB store on a real file: group commit, truncation, compaction into archives, reads."""
from __future__ import annotations

import gevent
import pytest

from mesh.storage.entries import KIND_MSG, KIND_NOOP, KIND_OP
from mesh.storage.store import Store


def msg(idx, seq, channel="c1", term=1):
    return (idx, term, KIND_MSG, [channel, 2, seq, 1000 + idx, "u1", f"cmn{idx}", 1700000000 + idx, 2, 0, 0, "",
                                  b"payload%d" % idx])


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path), commit_interval=0.001)
    s.open()
    yield s
    s.close()


def test_group_commit_many_writers(store):
    jobs = [gevent.spawn(store.append, slot, [msg(i, i, f"ch{slot}") for i in range(1, 51)]) for slot in range(10)]
    gevent.joinall(jobs, raise_error=True)
    for slot in range(10):
        assert store.last_entry(slot) == (50, 1)
        assert len(store.read_entries(slot, 1, 100)) == 50


def test_entries_round_trip_all_kinds(store):
    entries = [(1, 1, KIND_NOOP, None), (2, 1, KIND_OP, ["user.token", {"uid": "u", "token": "t"}]), msg(3, 1)]
    store.append(7, entries)
    assert store.read_entries(7, 1, 3) == entries


def test_truncate_drops_only_the_suffix(store):
    store.append(1, [msg(i, i) for i in range(1, 11)])
    store.truncate_after(1, 6)
    assert store.last_entry(1) == (6, 1)
    store.append(1, [msg(7, 7, term=2)])
    assert store.last_entry(1) == (7, 2)


def test_compaction_keeps_reads_and_orders_archive(store):
    rows = []
    for i in range(1, 301):
        rows.append(msg(i, (i + 2) // 3, channel=f"c{i % 3}"))
    store.append(3, rows)
    before = store.messages(3, "c1", 2, "seq BETWEEN ? AND ?", [10, 20], limit=100)
    store.compact(3, 250)
    after = store.messages(3, "c1", 2, "seq BETWEEN ? AND ?", [10, 20], limit=100)
    assert before == after and len(after) == 11
    assert store.read_entries(3, 240, 260) == [r for r in rows if 240 <= r[0] <= 260]
    assert store.last_entry(3) == (300, 1)
    assert store.count_rows(3) == 300
    # committed entries in the archive survive a truncation of the uncommitted tail
    store.truncate_after(3, 280)
    assert store.count_rows(3) == 280
    assert store.messages(3, "c1", 2, "mid = ?", [1000 + 100], limit=1)[0][0] == 100


def test_reopen_keeps_everything(tmp_path):
    s = Store(str(tmp_path))
    s.open()
    s.append(2, [msg(1, 1), msg(2, 2)])
    s.save_snapshot(2, 2, 1, b"state")
    s.compact(2, 1)
    s.close()
    s2 = Store(str(tmp_path))
    s2.open()
    try:
        assert s2.last_entry(2) == (2, 1)
        assert s2.load_snapshot(2) == (2, 1, b"state")
        assert s2.local_slots() == {2}
        s2.drop_slot(2)
        assert s2.local_slots() == set() and s2.last_entry(2) == (0, 0)
    finally:
        s2.close()


CRASHER = """
import sys, gevent
from gevent import monkey
from mesh.storage.entries import KIND_MSG
from mesh.storage.store import Store
s = Store(sys.argv[1], flush_interval=3600)
s.open()
for i in range(1, 201):
    s.append(5, [(i, 1, KIND_MSG, ["c", 2, i, i, "u", "m%d" % i, 0, 0, 0, 0, "", b"x"])])
s.truncate_after(5, 150)
print("durable", flush=True)
gevent.sleep(3600)
"""


def test_kill_9_before_duckdb_flush_loses_nothing(tmp_path):
    """Writes acknowledged by the log survive a kill -9 that comes before DuckDB saw them."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(tmp_path)], stdout=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert proc.stdout.readline().strip() == b"durable"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # a torn record at the end of the log (a write cut short by the crash) is cut on replay
    segs = sorted(os.listdir(tmp_path / "wal"))
    with open(tmp_path / "wal" / segs[-1], "ab") as fh:
        fh.write(b"\x00\x00\x01\x00garbage")
    s = Store(str(tmp_path))
    s.open()
    try:
        assert s.last_entry(5) == (150, 1)
        assert [e[0] for e in s.read_entries(5, 1, 300)] == list(range(1, 151))
        s.append(5, [msg(151, 151)])
        assert s.last_entry(5) == (151, 1)
    finally:
        s.close()
    s = Store(str(tmp_path))
    s.open()
    try:
        assert s.last_entry(5) == (151, 1) and s.count_rows(5) == 151
    finally:
        s.close()


def test_log_segments_covered_by_duckdb_are_deleted(tmp_path):
    import os

    s = Store(str(tmp_path), flush_interval=0.01)
    s.open()
    s.append(1, [msg(1, 1)])
    s.close()
    s = Store(str(tmp_path), flush_interval=0.01)
    s.open()
    try:
        s.append(1, [msg(2, 2)])
        assert s.last_entry(1) == (2, 1)
        assert len(os.listdir(tmp_path / "wal")) == 1  # older segments went once DuckDB held them
    finally:
        s.close()


def test_commits_run_on_the_loop_while_the_disk_is_fast_and_leave_it_when_slow(tmp_path, monkeypatch, caplog):
    import logging
    import os
    import time

    from mesh.base import metrics
    from mesh.storage import store as store_mod

    loop, pool = metrics.store_wal_commits.labels("loop"), metrics.store_wal_commits.labels("pool")
    s = Store(str(tmp_path), commit_interval=0, inline_sync_max=0.05)
    s.open()
    try:
        l0, p0 = loop.v, pool.v
        for i in range(1, 21):
            s.append(1, [msg(i, i)])
        assert (pool.v - p0, loop.v - l0) == (8, 12)  # 8 fast commits in a row, then on the loop

        real = os.fdatasync
        monkeypatch.setattr(store_mod.os, "fdatasync", lambda fd: (time.sleep(0.6), real(fd)))  # a stall: over 10 x 50 ms
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.005)) for _ in range(1000)])
        with caplog.at_level(logging.WARNING, logger="mesh.storage.store"):
            l1, p1 = loop.v, pool.v
            for i in range(21, 25):
                n = len(ticks)
                s.append(1, [msg(i, i)])
                if i > 21:
                    assert len(ticks) > n  # in the threadpool: the loop ran meanwhile
        ticker.kill()
        assert (loop.v - l1, pool.v - p1) == (1, 3)  # the stall on the loop, the rest in the pool
        assert sum("commits go to worker threads" in r.getMessage() for r in caplog.records) == 1
        assert s.last_entry(1) == (24, 1)
    finally:
        s.close()


def test_inline_sync_max_zero_keeps_commits_in_the_threadpool(tmp_path):
    from mesh.base import metrics

    loop = metrics.store_wal_commits.labels("loop")
    s = Store(str(tmp_path), commit_interval=0, inline_sync_max=0)
    s.open()
    try:
        l0 = loop.v
        for i in range(1, 21):
            s.append(1, [msg(i, i)])
        assert loop.v == l0
    finally:
        s.close()
