"""Write-ahead log faults: a zero-filled tail, short writes and failed fsyncs (injected by wrapping os calls).

Every test ends with a "crash" (the store is abandoned without a DuckDB flush, so the
next open must replay the log) and checks that every acknowledged write is back.
"""
from __future__ import annotations

import errno
import os

import duckdb
import gevent
import pytest

from mesh.storage.store import KIND_MSG, Store, StoreError, Wal


def msg(idx: int, slot_channel: str = "c1") -> tuple:
    return (idx, 1, KIND_MSG, [slot_channel, 2, idx, 1000 + idx, "u1", f"cmn{idx}", 1700000000 + idx, 2, 0, 0, "",
                               b"payload%d" % idx])


def open_store(path) -> Store:
    s = Store(str(path), commit_interval=0.001, flush_interval=3600)  # DuckDB only catches up when asked
    s.open()
    return s


def flush(s: Store) -> None:
    """Bring DuckDB up to the log now (it records the log position it reached), then let it idle again."""
    s._sync_duck()
    s._duck_force.clear()


def crash(s: Store) -> None:
    """Abandon the store like a kill -9 would: no DuckDB flush, the log as it is on disk."""
    gevent.killall(s._greenlets, block=True)
    s.wal.close()
    for _ in range(200):  # a flush already running in a worker thread finishes first
        try:
            s.con.close()
            break
        except duckdb.Error:
            gevent.sleep(0.05)
    s.con = None
    s.closed = True


def indexes(s: Store, slot: int) -> list[int]:
    return [e[0] for e in s.read_entries(slot, 1, 10_000)]


class Faults:
    """Wraps os.write / os.fdatasync for the log's file descriptor only."""

    def __init__(self, monkeypatch, wal: Wal) -> None:
        self.wal = wal
        self.short_writes = 0  # next N writes write half their bytes
        self.write_errors = 0  # next N writes fail (after a short write, like a disk filling up)
        self.fsync_errors = 0  # next N fdatasyncs fail with EIO
        real_write, real_sync = os.write, os.fdatasync

        def write(fd, data):
            if fd == self.wal.fd:
                if self.write_errors and not self.short_writes:
                    self.write_errors -= 1
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
                if self.short_writes:
                    self.short_writes -= 1
                    return real_write(fd, bytes(data)[: max(1, len(data) // 2)])
            return real_write(fd, data)

        def fdatasync(fd):
            if fd == self.wal.fd and self.fsync_errors:
                self.fsync_errors -= 1
                raise OSError(errno.EIO, "Input/output error (injected)")
            return real_sync(fd)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fdatasync", fdatasync)


def test_zero_filled_tail_is_a_torn_tail(tmp_path):
    """A preallocated page that never got its data (zeros) after the last record: the store opens."""
    s = open_store(tmp_path)
    s.append(1, [msg(1), msg(2)])
    s.close()  # DuckDB holds both; its log position is the end of the segment
    s = open_store(tmp_path)
    s.append(1, [msg(3)])
    crash(s)
    seg = sorted(os.listdir(tmp_path / "wal"))[-1]
    with open(tmp_path / "wal" / seg, "ab") as fh:
        fh.write(b"\x00" * 4096)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2, 3]
        assert os.path.getsize(tmp_path / "wal" / seg) < 4096  # the zeros were cut
        s.append(1, [msg(4)])
    finally:
        crash(s)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2, 3, 4]
    finally:
        s.close()


def test_zero_filled_tail_after_duckdb_position(tmp_path):
    """Zeros right where DuckDB's recorded log position points (nothing to replay but the zeros)."""
    s = open_store(tmp_path)
    s.append(1, [msg(1)])
    s.close()
    seg = sorted(os.listdir(tmp_path / "wal"))[-1]
    with open(tmp_path / "wal" / seg, "ab") as fh:
        fh.write(b"\x00" * 8192)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1]
    finally:
        s.close()


def test_short_write_keeps_the_log_whole(tmp_path, monkeypatch):
    s = open_store(tmp_path)
    faults = Faults(monkeypatch, s.wal)
    s.append(1, [msg(1)])
    faults.short_writes = 1
    s.append(1, [msg(2), msg(3)])  # the rest of the record is written, or the append fails
    flush(s)  # DuckDB records the log position it reached
    s.append(1, [msg(4)])
    crash(s)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2, 3, 4]
    finally:
        s.close()


def test_short_write_then_error_leaves_no_partial_record(tmp_path, monkeypatch):
    s = open_store(tmp_path)
    faults = Faults(monkeypatch, s.wal)
    s.append(1, [msg(1)])
    faults.short_writes, faults.write_errors = 1, 1
    with pytest.raises(StoreError):
        s.append(2, [msg(1, "x")])  # not acknowledged
    s.append(1, [msg(2)])
    flush(s)
    s.append(1, [msg(3)])
    crash(s)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2, 3]
        assert indexes(s, 2) == []  # the failed write left nothing behind
    finally:
        s.close()


def test_failed_fsync_loses_no_acknowledged_record(tmp_path, monkeypatch):
    s = open_store(tmp_path)
    faults = Faults(monkeypatch, s.wal)
    s.append(1, [msg(1), msg(2)])
    faults.fsync_errors = 1
    with pytest.raises(StoreError):
        s.append(2, [msg(1, "x")])  # fsync failed: not acknowledged
    s.append(1, [msg(3)])  # the log recovered from its last good record
    flush(s)
    s.append(1, [msg(4)])
    crash(s)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2, 3, 4]
        assert indexes(s, 2) == []  # the write whose fsync failed was cut from the log
    finally:
        s.close()


def test_log_that_cannot_recover_refuses_writes(tmp_path, monkeypatch):
    """While the log cannot get back to its last good record, no write is acknowledged."""
    s = open_store(tmp_path)
    faults = Faults(monkeypatch, s.wal)
    s.append(1, [msg(1)])
    faults.fsync_errors = 3  # the write, then the recovery's own syncs fail too
    for _ in range(2):
        with pytest.raises(StoreError):
            s.append(1, [msg(2)])
    faults.fsync_errors = 0
    s.append(1, [msg(2)])
    crash(s)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2]
    finally:
        s.close()


def test_failed_segment_rotation_is_recovered_by_the_next_write(tmp_path, monkeypatch):
    from mesh.storage import store as store_mod

    monkeypatch.setattr(store_mod, "SEGMENT_BYTES", 1)  # every write starts a new segment
    s = open_store(tmp_path)
    real_open = os.open
    fail = {"n": 1}

    def flaky_open(path, flags, mode=0o777, *args, **kwargs):
        if str(path).endswith(".wal") and fail["n"]:
            fail["n"] -= 1
            raise OSError(errno.EMFILE, "Too many open files (injected)")
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", flaky_open)
    s.append(1, [msg(1)])  # durable; starting the next segment fails
    s.append(1, [msg(2)])  # the log recovers first, then takes it
    crash(s)
    s = open_store(tmp_path)
    try:
        assert indexes(s, 1) == [1, 2]
    finally:
        s.close()
