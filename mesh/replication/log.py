"""The rules of one slot's log, in memory: positions, terms, matching and conflicts.

Pure (no gevent, sockets, disk or clock), like etcd raft's ``log.go``. A ``SlotLog``
knows the last (index, term) and keeps the recent entries in memory; older ones are
read through a ``LogReader`` (the store on a node, a list in the simulation). It
decides how a run of entries from a leader fits the log (``merge_plan``): which are
already there, where a conflicting uncommitted suffix must be cut, and when the
entries cannot be taken at all (a conflict below the commit index, a gap).

An entry is a tuple ``(index, term, kind, data)``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from mesh.storage.entries import KIND_MSG

TAIL = 2000  # recent entries kept in memory (older ones are read through the reader)


class LogReader(Protocol):
    def read_entries(self, first: int, last: int) -> list[tuple]:
        """Durable entries first..last (inclusive); fewer when the log ends earlier."""


class LogConflict(Exception):
    """Entries that cannot be merged: they contradict a committed entry or leave a gap."""


class SlotLog:
    def __init__(self, reader: LogReader, last_index: int = 0, last_term: int = 0,
                 snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        self.reader = reader
        self.last_index = last_index
        self.last_term = last_term
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.tail: OrderedDict[int, tuple] = OrderedDict()  # idx -> entry, recent ones

    # ------------------------------------------------------------------ reading
    def term_at(self, idx: int) -> int:
        """The term of entry ``idx``: 0 before the log, -1 when unknown (past the end, compacted)."""
        if idx == 0:
            return 0
        if idx > self.last_index:
            return -1
        if idx == self.last_index:
            return self.last_term
        e = self.tail.get(idx)
        if e is not None:
            return e[1]
        if idx == self.snapshot_index:
            return self.snapshot_term
        got = self.reader.read_entries(idx, idx)
        return got[0][1] if got else -1

    def entries(self, first: int, last: int) -> list[tuple]:
        """Entries first..last (inclusive, clipped to the log), from memory when recent."""
        last = min(last, self.last_index)
        if first > last:
            return []
        tail = self.tail
        # the tail covers tail_first..last_index; below it the reader is right (a cut
        # not yet persisted only touches indices the tail covers)
        tail_first = next(iter(tail)) if tail else last + 1
        out = self.reader.read_entries(first, min(last, tail_first - 1)) if first < tail_first else []
        for i in range(max(first, tail_first), last + 1):
            out.append(tail[i])
        return out

    def up_to_date(self, last_term: int, last_index: int) -> bool:
        """Whether a log ending at (last_term, last_index) is at least as long as ours."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # ------------------------------------------------------------------ changing (memory only)
    def append(self, entries: list[tuple]) -> None:
        """Entries that continue the log (the caller makes them durable)."""
        if not entries:
            return
        if entries[0][0] != self.last_index + 1:
            raise LogConflict(f"entries from {entries[0][0]} do not follow the log ({self.last_index})")
        tail = self.tail
        for e in entries:
            # held as a plain tuple (not an ``Entry``, not a list): the cycle collector
            # untracks a tuple of plain values, and only an exact tuple, so the thousands of
            # recent messages held here cost nothing at each full collection
            if e[2] == KIND_MSG and type(e[3]) is list:
                e = (e[0], e[1], e[2], tuple(e[3]))
            elif type(e) is not tuple:
                e = (e[0], e[1], e[2], e[3])
            tail[e[0]] = e
        while len(tail) > TAIL:
            tail.popitem(last=False)
        self.last_index, self.last_term = entries[-1][0], entries[-1][1]

    def truncate_after(self, idx: int) -> int:
        """Forget entries after ``idx``; returns how many were dropped."""
        dropped = max(0, self.last_index - idx)
        if not dropped:
            return 0
        for i in [i for i in self.tail if i > idx]:
            del self.tail[i]
        term = self.term_at(idx) if idx else 0
        self.last_index = idx
        self.last_term = max(term, 0)
        return dropped

    def _held_terms(self, entries: list[tuple]) -> dict[int, int]:
        """Our terms at the indices of ``entries`` that we hold, read in one go.

        One read of the range, not one per entry: a node that restarted has nothing in
        memory, and a recovery fetch or a leader's catch-up run can cover thousands of
        entries it already holds (one store read each made a recovery take seconds).
        """
        if not entries:
            return {}
        first, last = entries[0][0], min(entries[-1][0], self.last_index)
        if first > last:
            return {}
        return {e[0]: e[1] for e in self.entries(first, last)}

    # ------------------------------------------------------------------ the merge rule
    def merge_plan(self, entries: list[tuple], commit_index: int) -> tuple[int | None, list[tuple]]:
        """How ``entries`` (which follow a matching prefix) fit: (cut after, entries to append).

        Entries we already hold with the same term are skipped (same index and term
        means the same entry: a term has one leader, who never reuses an index). At
        the first index where our term differs, our suffix is cut; that suffix is
        uncommitted by construction, and a cut below ``commit_index`` raises.
        """
        cut = None
        first_new = None
        held = self._held_terms(entries)
        for e in entries:
            idx = e[0]
            if idx <= self.last_index:
                term = held.get(idx)
                if (term if term is not None else self.term_at(idx)) == e[1]:
                    continue
                if idx <= commit_index:
                    raise LogConflict(f"committed entry {idx} conflicts with the leader's")
                cut = idx - 1
            first_new = idx
            break
        if first_new is None:
            return None, []
        new = [e for e in entries if e[0] >= first_new]
        start = cut if cut is not None else self.last_index
        if new[0][0] != start + 1:
            raise LogConflict(f"entries {new[0][0]}..{new[-1][0]} do not follow the log ({start})")
        return cut, new
