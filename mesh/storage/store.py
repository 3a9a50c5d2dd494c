"""This node's durable storage: a write-ahead log for durability, DuckDB for queries.

Writes (log appends, truncations, snapshots, slot drops) are made durable by appending
them to a sequential write-ahead log under ``<rootDir>/wal/`` and ``fdatasync``-ing it
once per group commit (``store.commitInterval``): that is the moment a write counts as
durable and a replica may acknowledge it. A second loop copies the logged writes into
DuckDB in large batches every ``store.flushInterval`` and records, in the same DuckDB
transaction, the log position it has reached; on start the log after that position is
replayed, and log segments DuckDB fully covers are deleted.

DuckDB layout (``<rootDir>/skein.duckdb``):

* ``hot``: every log entry of every slot this node replicates, appended by the flusher
  (one transaction and one appender flush for many entries);
* ``arch_<slot>``: committed entries moved out of ``hot`` by ``compact()``, written
  ordered by (kind, channel, seq) so that history reads of one channel touch few row
  groups however large the table grows;
* ``snap``: the latest state snapshot of each slot (metadata state at a log index);
* ``meta``: small key/value facts (among them the log position DuckDB has reached).

A log entry is an ``Entry(idx, term, kind, data)`` (``mesh.storage.entries``: NOOP, MSG
with a message row, or OP). ``Store`` implements ``mesh.storage.log_store.LogStore``,
whose docstrings are the contract replication relies on. Every DuckDB call runs in the
gevent hub's threadpool (they release the GIL; calling them on the hub would stall every
socket). A group commit of the log runs on the event loop itself while the disk's recent
commits were fast (``store.inlineSyncMax``; ``mesh.storage.sync_placement`` decides), and
in the threadpool otherwise. Reads first bring DuckDB up to date with the log.
"""
from __future__ import annotations

import errno
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterable
from typing import Any

import duckdb
import gevent
import gevent.event
import msgpack

from mesh.base import metrics
from mesh.storage import snapshot
from mesh.storage.entries import KIND_MSG, Entry
from mesh.storage.log_store import StoreError
from mesh.storage.sync_placement import SyncPlacement

__all__ = ["COLUMNS", "Store", "StoreError", "Wal"]

log = logging.getLogger("mesh.storage.store")

COLUMNS = ("idx BIGINT, term BIGINT, kind UTINYINT, channel VARCHAR, ctype UTINYINT, seq BIGINT, mid BIGINT, "
           "from_uid VARCHAR, cmn VARCHAR, ts BIGINT, flags UTINYINT, setting UTINYINT, expire UINTEGER, "
           "topic VARCHAR, payload BLOB, op BLOB")
SELECT_COLS = "idx, term, kind, channel, ctype, seq, mid, from_uid, cmn, ts, flags, setting, expire, topic, payload, op"

_pack = msgpack.Packer(use_bin_type=True).pack


def _unpack(b: bytes) -> Any:
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


def entry_to_row(slot: int, e: Entry) -> tuple:
    idx, term, kind, data = e
    if kind == KIND_MSG:
        d = data
        return (slot, idx, term, kind, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], None)
    return (slot, idx, term, kind, None, None, None, None, None, None, None, None, None, None, None, None,
            _pack(data) if data is not None else None)


def row_to_entry(r: tuple) -> Entry:
    idx, term, kind = r[0], r[1], r[2]
    if kind == KIND_MSG:
        return Entry(idx, term, kind, [r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13] or "",
                                       bytes(r[14]) if r[14] is not None else b""])
    return Entry(idx, term, kind, _unpack(r[15]) if r[15] is not None else None)


class _Write:
    __slots__ = ("kind", "slot", "payload", "done")

    def __init__(self, kind: str, slot: int, payload: Any) -> None:
        self.kind = kind
        self.slot = slot
        self.payload = payload
        self.done = gevent.event.AsyncResult()


_REC = struct.Struct(">II")  # body length, crc32 of the body
SEGMENT_BYTES = 64 * 1024 * 1024


class Wal:
    """Append-only log segments ``<dir>/<n>.wal`` of crc-checked msgpack records.

    ``offset`` is always the end of the last record known durable. A write that fails
    part-way (a short write followed by an error, a failed ``fdatasync``) raises
    ``StoreError`` and nothing it wrote stays in the log: the segment is cut back to
    ``offset`` and synced, and appending goes on in a fresh segment (after a failed
    fsync the kernel may have dropped the dirty pages, so the old file descriptor is
    not trusted again). Until that recovery succeeds every write raises: the node
    acknowledges nothing from this log while it is in doubt.
    """

    def __init__(self, directory: str, fsync: bool = True) -> None:
        self.dir = directory
        self.fsync = fsync
        os.makedirs(directory, exist_ok=True)
        self.fd = -1
        self.segment = 0
        self.offset = 0
        self.failed: str = ""  # why the log refuses writes until it recovered ("" = healthy)
        self.last_seconds = 0.0  # how long the last write and its fdatasync took

    def segments(self) -> list[int]:
        return sorted(int(n[:-4]) for n in os.listdir(self.dir) if n.endswith(".wal") and n[:-4].isdigit())

    def path(self, n: int) -> str:
        return os.path.join(self.dir, f"{n:08d}.wal")

    @staticmethod
    def encode(kind: str, slot: int, payload: Any) -> bytes:
        body = _pack([kind, slot, payload])
        return _REC.pack(len(body), zlib.crc32(body)) + body

    def replay(self, from_segment: int, from_offset: int):
        """Yield (segment, end offset, kind, slot, payload) after a position; cut a torn tail.

        A torn tail is anything after the last whole record: a record cut short, a bad
        checksum, or zeros (a preallocated page the data never reached; a real record
        is never empty).
        """
        for n in self.segments():
            if n < from_segment:
                continue
            with open(self.path(n), "rb") as fh:
                data = fh.read()
            pos = from_offset if n == from_segment else 0
            while pos + _REC.size <= len(data):
                size, crc = _REC.unpack_from(data, pos)
                body = data[pos + _REC.size:pos + _REC.size + size]
                if size == 0 or len(body) < size or zlib.crc32(body) != crc:
                    break
                try:
                    kind, slot, payload = _unpack(body)
                except (ValueError, TypeError):
                    break
                pos += _REC.size + size
                yield n, pos, kind, slot, payload
            if pos < len(data):
                log.warning("write-ahead log %s: cutting %d torn byte(s) at %d", self.path(n), len(data) - pos, pos)
                with open(self.path(n), "r+b") as fh:
                    fh.truncate(pos)

    def open_for_append(self, after: int) -> None:
        """Start a fresh segment numbered above every existing one and above ``after``."""
        segs = self.segments()
        self._open_segment(max([after] + segs) + 1)

    def _open_segment(self, n: int) -> None:
        self.fd = os.open(self.path(n), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.segment = n
        self.offset = 0

    def _sync_dir(self) -> None:
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _write_all(self, blob: bytes) -> None:
        view = memoryview(blob)
        done = 0
        while done < len(view):
            n = os.write(self.fd, view[done:])
            if n <= 0:
                raise OSError(errno.EIO, "write-ahead log write made no progress")
            done += n

    def write(self, blob: bytes) -> tuple[int, int]:
        """Append and make durable (on the event loop or in a worker thread); returns the position after it.

        Raises ``StoreError`` if the bytes are not known durable; the log then holds
        exactly what it held before the call.
        """
        if self.failed:
            self._recover()
        started = time.perf_counter()
        try:
            self._write_all(blob)
            if self.fsync:
                os.fdatasync(self.fd)
        except OSError as exc:
            self.failed = f"{exc.strerror or exc} during append at {self.segment}:{self.offset}"
            log.error("write-ahead log write failed (%s); refusing writes until it is back at its last good record",
                      self.failed)
            try:
                self._recover()
            except StoreError:
                pass
            raise StoreError(f"write-ahead log write failed: {exc}") from None
        self.last_seconds = time.perf_counter() - started
        self.offset += len(blob)
        pos = (self.segment, self.offset)
        if self.offset >= SEGMENT_BYTES:
            try:
                os.close(self.fd)
                self.fd = -1
                self._open_segment(self.segment + 1)
                if self.fsync:
                    self._sync_dir()
            except OSError as exc:  # this write is durable; the next one recovers first
                self.failed = f"{exc.strerror or exc} starting segment {self.segment + 1}"
                log.error("write-ahead log: %s", self.failed)
        return pos

    def _recover(self) -> None:
        """Cut the current segment back to its last good record and go on in a fresh segment."""
        try:
            if self.fd >= 0:
                os.ftruncate(self.fd, self.offset)
                if self.fsync:
                    os.fdatasync(self.fd)
                os.close(self.fd)
                self.fd = -1
            self._open_segment(self.segment + 1)
            if self.fsync:
                self._sync_dir()
        except OSError as exc:
            raise StoreError(f"write-ahead log unusable ({self.failed}); recovery failed: {exc}") from None
        log.warning("write-ahead log back at its last good record; appending to segment %d (was: %s)",
                    self.segment, self.failed)
        self.failed = ""

    def drop_before(self, segment: int) -> None:
        for n in self.segments():
            if n < segment:
                os.remove(self.path(n))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Store:
    """The ``LogStore`` of a node: write-ahead log in front, DuckDB behind (see the module docstring)."""

    def __init__(self, root: str, *, threads: int = 2, memory_limit: str = "512MB",
                 commit_interval: float = 0.002, commit_max: int = 2000, flush_interval: float = 1.0,
                 fsync: bool = True, inline_sync_max: float = 0.005) -> None:
        os.makedirs(root, exist_ok=True)
        self.root = root
        self.run_id = ""  # this open's id (``mesh.storage.snapshot``: markers, snapshots)
        self.restored = False  # this open put a snapshot in place of live files copied while running
        self.path = os.path.join(root, "skein.duckdb")
        self.threads = threads
        self.memory_limit = memory_limit
        self.commit_interval = commit_interval
        self.commit_max = commit_max
        self.flush_interval = flush_interval
        self.wal = Wal(os.path.join(root, "wal"), fsync=fsync)
        self._placement = SyncPlacement(inline_sync_max)
        self._placement_logged = -60.0
        self.con: duckdb.DuckDBPyConnection | None = None
        self._queue: list[_Write] = []  # waiting for the log
        self._pending: list[_Write] = []  # in the log, not yet in DuckDB
        self._pending_pos: tuple[int, int] = (0, 0)
        self._wake = gevent.event.Event()
        self._duck_wake = gevent.event.Event()
        self._duck_idle = gevent.event.Event()
        self._duck_idle.set()
        self._duck_force = gevent.event.Event()  # a read is waiting: flush now
        self._greenlets: list[gevent.Greenlet] = []
        self._pool = gevent.get_hub().threadpool
        self._appender = None
        self._arch_tables: set[int] = set()
        self.closed = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        # a directory copied while its node ran comes back from its snapshot
        self.restored = snapshot.recover(self.root) == snapshot.COPIED
        self.run_id = snapshot.mark_open(self.root)
        self.con = duckdb.connect(self.path, config={"threads": self.threads, "memory_limit": self.memory_limit})
        self.con.execute(f"CREATE TABLE IF NOT EXISTS hot (slot SMALLINT, {COLUMNS})")
        self.con.execute("CREATE TABLE IF NOT EXISTS snap (slot SMALLINT, idx BIGINT, term BIGINT, data BLOB)")
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        for (name,) in self.con.execute("SELECT table_name FROM information_schema.tables "
                                        "WHERE table_name LIKE 'arch_%'").fetchall():
            self._arch_tables.add(int(name.split("_", 1)[1]))
        self._appender = self.con.appender("hot")
        last = self._replay()
        self.wal.open_for_append(last[0])
        self._greenlets = [gevent.spawn(self._wal_loop), gevent.spawn(self._duck_loop)]

    def _replay(self) -> tuple[int, int]:
        """Bring DuckDB up to the end of the write-ahead log (after a crash or kill -9)."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'wal_pos'").fetchone()
        seg, off = (int(x) for x in row[0].split(":")) if row else (0, 0)
        batch: list[_Write] = []
        n = 0
        last = (seg, off)
        for segment, end, kind, slot, payload in self.wal.replay(seg, off):
            if kind == "append":
                payload = [Entry(*e) for e in payload]
            elif kind == "snapshot":
                payload = tuple(payload)
            batch.append(_Write(kind, slot, payload))
            last = (segment, end)
            n += 1
            if len(batch) >= 5000:
                self._commit(batch, last)
                batch = []
        if batch:
            self._commit(batch, last)
        if n:
            log.info("replayed %d write(s) from the write-ahead log into DuckDB (up to %s)", n, last)
        self._pending_pos = last
        self.wal.drop_before(last[0])
        return last

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._sync_duck(timeout=5)
        except Exception:
            pass
        gevent.killall(self._greenlets, block=True, timeout=2)
        for w in self._queue:
            if not w.done.ready():
                w.done.set_exception(StoreError("store closed"))
        self._queue = []
        self.wal.close()
        if self.con is not None:
            try:
                self.con.close()
                snapshot.mark_closed(self.root)
            except Exception:
                pass
            self.con = None

    def _run(self, fn, *args, sync: bool = True):
        """Run ``fn(cursor, *args)`` on a fresh cursor in the threadpool (after DuckDB caught up)."""
        if sync:
            self._sync_duck()
        con = self.con
        if con is None:
            raise StoreError("store closed")

        def call():
            cur = con.cursor()
            try:
                return fn(cur, *args)
            finally:
                cur.close()
        return self._pool.apply(call)

    # ------------------------------------------------------------------ durable writes (the log)
    def _submit(self, w: _Write) -> Any:
        if self.closed:
            raise StoreError("store closed")
        self._queue.append(w)
        self._wake.set()
        return w.done.get()

    def append(self, slot: int, entries: list[Entry]) -> None:
        """Make ``entries`` durable (returns after the log write that contains them)."""
        if entries:
            self._submit(_Write("append", slot, entries))

    def truncate_after(self, slot: int, idx: int) -> None:
        """Delete this slot's uncommitted entries with index > idx (they never reached a majority)."""
        self._submit(_Write("truncate", slot, idx))

    def save_snapshot(self, slot: int, idx: int, term: int, data: bytes) -> None:
        self._submit(_Write("snapshot", slot, (idx, term, data)))

    def drop_slot(self, slot: int) -> None:
        """Forget everything of a slot this node no longer replicates."""
        self._submit(_Write("drop", slot, None))

    def put_meta(self, key: str, value: str) -> None:
        self._submit(_Write("meta", 0, (key, value)))

    def save_hard_state(self, slot: int, term: int, led: int) -> None:
        """Make a slot's hard state durable: the highest term known and the last term led here."""
        self.put_meta(f"hard/{int(slot)}", f"{int(term)}:{int(led)}")

    def load_hard_state(self, slot: int) -> tuple[int, int]:
        """(term, led) last saved for ``slot``; (0, 0) if none."""
        raw = self.get_meta(f"hard/{int(slot)}")
        if not raw:
            return 0, 0
        term, led = raw.split(":")
        return int(term), int(led)

    def compact(self, slot: int, upto: int) -> None:
        """Move this slot's committed entries (idx <= upto) from ``hot`` to ``arch_<slot>`` (DuckDB only)."""
        w = _Write("compact", slot, upto)
        self._pending.append(w)
        self._duck_wake.set()
        w.done.get()

    def _wal_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.commit_interval:
                gevent.sleep(self.commit_interval)
            while self._queue:
                batch, self._queue = self._queue[:self.commit_max], self._queue[self.commit_max:]
                started = time.perf_counter()
                blob = b"".join(Wal.encode(w.kind, w.slot, w.payload) for w in batch)
                inline = self._placement.inline(time.monotonic())
                try:
                    pos = self.wal.write(blob) if inline else self._pool.apply(self.wal.write, (blob,))
                except Exception as exc:
                    self._placement.observe(float("inf"), time.monotonic(), inline)  # a failure counts as a stall
                    if isinstance(exc, StoreError):
                        log.error("write-ahead log write of %d write(s) failed: %s", len(batch), exc)
                        err = exc
                    else:
                        log.exception("write-ahead log write of %d write(s) failed", len(batch))
                        err = StoreError(f"log write failed: {exc}")
                    for w in batch:
                        w.done.set_exception(err)
                    continue
                metrics.store_commit_seconds.observe(time.perf_counter() - started)
                metrics.store_wal_commits.labels("loop" if inline else "pool").inc()
                self._observe_commit(self.wal.last_seconds, inline)
                metrics.store_commit_entries.observe(sum(len(w.payload) for w in batch if w.kind == "append"))
                self._pending.extend(batch)
                self._pending_pos = pos
                for w in batch:
                    w.done.set(None)
                self._duck_idle.clear()
                self._duck_wake.set()

    def _observe_commit(self, seconds: float, inline: bool) -> None:
        now = time.monotonic()
        if self._placement.observe(seconds, now, inline) and now - self._placement_logged >= 60.0:
            self._placement_logged = now
            log.warning("write-ahead log commit took %.1f ms (a stall: over 10 x store.inlineSyncMax %.1f ms): "
                        "commits go to worker threads for the next %.0f s", seconds * 1000,
                        self._placement.inline_max * 1000, self._placement.hold)

    # ------------------------------------------------------------------ DuckDB (the queryable copy)
    def _duck_loop(self) -> None:
        while True:
            self._duck_wake.wait(timeout=self.flush_interval)
            self._duck_wake.clear()
            if not self._pending:
                self._duck_idle.set()
                continue
            if not self._duck_force.is_set() and not any(w.kind == "compact" for w in self._pending):
                self._duck_force.wait(timeout=self.flush_interval)  # gather a large batch unless a read waits
            self._duck_force.clear()
            batch, self._pending = self._pending, []
            pos = self._pending_pos
            started = time.perf_counter()
            try:
                self._pool.apply(self._commit, (batch, pos))
            except Exception as exc:
                log.exception("DuckDB flush of %d write(s) failed; retrying", len(batch))
                self._pending = batch + self._pending
                gevent.sleep(0.5)
                self._duck_wake.set()
                for w in batch:
                    if w.kind == "compact" and not w.done.ready():
                        w.done.set_exception(StoreError(f"compaction failed: {exc}"))
                continue
            metrics.store_flush_seconds.observe(time.perf_counter() - started)
            for w in batch:
                if w.kind == "compact":
                    w.done.set(None)
            if pos[0] > 1:
                try:
                    self.wal.drop_before(pos[0])
                except OSError:
                    pass
            if not self._pending:
                self._duck_idle.set()

    def _sync_duck(self, timeout: float = 30.0) -> None:
        """Wait until DuckDB holds every write made durable so far."""
        if not self._pending and self._duck_idle.is_set():
            return
        self._duck_force.set()
        self._duck_wake.set()
        deadline = time.monotonic() + timeout
        while self._pending or not self._duck_idle.is_set():
            if time.monotonic() > deadline:
                raise StoreError("DuckDB is behind the write-ahead log (flushes failing?)")
            self._duck_force.set()
            self._duck_wake.set()
            self._duck_idle.wait(timeout=0.05)

    def _commit(self, batch: list[_Write], pos: tuple[int, int]) -> int:
        con = self.con
        rows: list[tuple] = []
        con.execute("BEGIN")
        try:
            for w in batch:
                if w.kind == "append":
                    rows.extend(entry_to_row(w.slot, e) for e in w.payload)
                    continue
                if rows:  # keep the order of appends and deletes
                    self._appender.append_rows(rows)
                    self._appender.flush()
                    rows = []
                if w.kind == "truncate":
                    con.execute("DELETE FROM hot WHERE slot = ? AND idx > ?", [w.slot, w.payload])
                elif w.kind == "snapshot":
                    idx, term, data = w.payload
                    con.execute("DELETE FROM snap WHERE slot = ?", [w.slot])
                    con.execute("INSERT INTO snap VALUES (?, ?, ?, ?)", [w.slot, idx, term, data])
                elif w.kind == "drop":
                    con.execute("DELETE FROM hot WHERE slot = ?", [w.slot])
                    con.execute("DELETE FROM snap WHERE slot = ?", [w.slot])
                    if w.slot in self._arch_tables:
                        con.execute(f"DROP TABLE IF EXISTS arch_{int(w.slot)}")
                        self._arch_tables.discard(w.slot)
                elif w.kind == "meta":
                    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(w.payload))
                elif w.kind == "compact":
                    slot = int(w.slot)
                    con.execute(f"CREATE TABLE IF NOT EXISTS arch_{slot} ({COLUMNS})")
                    con.execute(f"INSERT INTO arch_{slot} SELECT {SELECT_COLS} FROM hot WHERE slot = ? AND idx <= ? "
                                "ORDER BY kind, channel, ctype, seq", [slot, w.payload])
                    con.execute("DELETE FROM hot WHERE slot = ? AND idx <= ?", [slot, w.payload])
                    self._arch_tables.add(slot)
            if rows:
                self._appender.append_rows(rows)
                self._appender.flush()
            con.execute("INSERT OR REPLACE INTO meta VALUES ('wal_pos', ?)", [f"{pos[0]}:{pos[1]}"])
            con.execute("COMMIT")
        except Exception:
            try:
                con.execute("ROLLBACK")
            except Exception:
                pass
            raise
        return sum(len(w.payload) for w in batch if w.kind == "append")

    # ------------------------------------------------------------------ compaction
    # ------------------------------------------------------------------ reads
    def _sources(self, slot: int) -> list[str]:
        src = [f"(SELECT {SELECT_COLS} FROM hot WHERE slot = {int(slot)})"]
        if slot in self._arch_tables:
            src.append(f"arch_{int(slot)}")
        return src

    def _union(self, slot: int, where: str) -> str:
        return " UNION ALL ".join(f"SELECT {SELECT_COLS} FROM {s} WHERE {where}" for s in self._sources(slot))

    def read_entries(self, slot: int, first: int, last: int) -> list[Entry]:
        """Entries first..last (inclusive) in index order."""
        sql = f"SELECT * FROM ({self._union(slot, 'idx BETWEEN ? AND ?')}) ORDER BY idx"
        n = len(self._sources(slot))
        rows = self._run(lambda cur: cur.execute(sql, [first, last] * n).fetchall())
        return [row_to_entry(r) for r in rows]

    def last_entry(self, slot: int) -> tuple[int, int]:
        """(index, term) of the slot's last entry, (0, 0) if none."""
        sql = f"SELECT idx, term FROM ({self._union(slot, 'true')}) ORDER BY idx DESC LIMIT 1"
        row = self._run(lambda cur: cur.execute(sql).fetchone())
        return (row[0], row[1]) if row else (0, 0)

    def load_snapshot(self, slot: int) -> tuple[int, int, bytes] | None:
        row = self._run(lambda cur: cur.execute("SELECT idx, term, data FROM snap WHERE slot = ?", [slot]).fetchone())
        return (row[0], row[1], bytes(row[2])) if row else None

    def local_slots(self) -> set[int]:
        """Slots with any data on this node."""
        def q(cur):
            s = {r[0] for r in cur.execute("SELECT DISTINCT slot FROM hot").fetchall()}
            s |= {r[0] for r in cur.execute("SELECT slot FROM snap").fetchall()}
            return s
        return self._run(q) | set(self._arch_tables)

    def get_meta(self, key: str) -> str | None:
        row = self._run(lambda cur: cur.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone())
        return row[0] if row else None

    def messages(self, slot: int, channel: str, ctype: int, where: str, params: Iterable, *, order: str = "ASC",
                 limit: int = 100, max_idx: int | None = None) -> list[Entry]:
        """MSG entries of one channel matching ``where`` (on columns seq, mid, cmn), up to commit ``max_idx``."""
        cond = f"kind = {KIND_MSG} AND channel = ? AND ctype = ? AND ({where})"
        params = list(params)
        if max_idx is not None:
            cond += f" AND idx <= {int(max_idx)}"
        n = len(self._sources(slot))
        sql = (f"SELECT * FROM ({self._union(slot, cond)}) ORDER BY seq {'DESC' if order == 'DESC' else 'ASC'} "
               f"LIMIT {int(limit)}")
        rows = self._run(lambda cur: cur.execute(sql, ([channel, ctype] + params) * n).fetchall())
        return [row_to_entry(r) for r in rows]

    def archived_slots(self) -> set[int]:
        return set(self._arch_tables)

    def query(self, fn):
        """Run ``fn(cursor)`` in the threadpool once DuckDB holds every durable write (backups)."""
        return self._run(fn)

    def count_rows(self, slot: int) -> int:
        sql = f"SELECT count(*) FROM ({self._union(slot, 'true')})"
        return self._run(lambda cur: cur.execute(sql).fetchone()[0])
