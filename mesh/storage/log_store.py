"""The storage interface replication and backups are written against, with its contract.

``LogStore`` is every call the replication package (``mesh.replication``), history reads
(``mesh.im.history``, through a replica's ``store``) and backups (``mesh.storage.backup``)
make on a node's storage. ``mesh.storage.store.Store`` (write-ahead log + DuckDB)
implements it; a test double or another backend must keep the same promises.

Promises common to every method:

* **Per node, not per slot.** One store holds every slot this node replicates; each
  call names its slot, and slots never see each other's data.
* **Durable writes** (``append``, ``truncate_after``, ``save_snapshot``, ``drop_slot``,
  ``put_meta``) return only once the write is on stable storage (with ``store.fsync``
  on): after a crash at any later moment, ``open()`` restores it. They are applied in
  the order they were submitted, across all callers and all slots, so a truncation
  submitted after an append removes what that append wrote, and a replay after a crash
  repeats them in the same order. A write that failed raised and is not applied.
* **Reads see every durable write** that returned before the read began (and maybe
  later ones), whatever has or has not been flushed to the query engine yet.
* **Errors**: a write or read that cannot be done raises ``StoreError`` (the store is
  closed, the log write failed, the query copy stays behind the log). A read may also
  raise the backend's own error (a damaged file, a bad ``where``): that is a bug or a
  broken disk, not a condition to retry. Calls block the calling greenlet only.
* **No checks of the log's rules**: the store does not verify that entries follow each
  other, that terms do not go down, or that a truncation spares committed entries;
  that is replication's job (``mesh.replication``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from mesh.storage.entries import Entry

T = TypeVar("T")


class StoreError(Exception):
    """The store could not do a read or write (closed, log write failed, query copy behind)."""


class LogStore(Protocol):
    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Open (or create) the store and bring it to the state of the last durable write.

        After it returns every read reflects every durable write made before the last
        close or crash; a write cut short by a crash (a torn tail) is dropped, never
        half-applied. Raises ``OSError`` or the backend's error if the files cannot be
        opened (the node does not start).
        """

    def close(self) -> None:
        """Stop taking writes; idempotent.

        Durable writes stay durable; writes still waiting for the log fail with
        ``StoreError``; every later call raises ``StoreError``.
        """

    # ------------------------------------------------------------------ durable writes
    def append(self, slot: int, entries: list[Entry]) -> None:
        """Add ``entries`` (in index order) to the end of ``slot``'s log; durable on return.

        The caller guarantees that the first follows the slot's last entry (after any
        truncation it submitted before). An empty list returns at once.
        """

    def truncate_after(self, slot: int, idx: int) -> None:
        """Delete ``slot``'s entries with an index above ``idx``; durable on return.

        Only for entries that were never committed: the store does not check.
        """

    def save_snapshot(self, slot: int, idx: int, term: int, data: bytes) -> None:
        """Replace ``slot``'s snapshot by ``data``, the state after entry ``idx`` (of ``term``); durable on return.

        Entries at or below ``idx`` stay readable (compaction, not snapshots, moves them).
        """

    def drop_slot(self, slot: int) -> None:
        """Forget everything of ``slot`` (log, archive, snapshot); durable on return."""

    def put_meta(self, key: str, value: str) -> None:
        """Set a node-wide key (not a slot's); durable on return."""

    # ------------------------------------------------------------------ housekeeping
    def save_hard_state(self, slot: int, term: int, led: int) -> None:
        """Make a slot's hard state durable before returning: the highest term this node knows
        (promised to a leader or seen in its appends) and the last term it led. Replication
        calls it before answering a promise or an append, so it must not return early."""

    def load_hard_state(self, slot: int) -> tuple[int, int]:
        """(term, led) last saved for ``slot`` by ``save_hard_state``; (0, 0) if never saved."""

    def compact(self, slot: int, upto: int) -> None:
        """Move ``slot``'s entries with index <= ``upto`` to the slot's archive.

        Only for committed entries. Reads return the same results before, during and
        after; nothing becomes more or less durable. Returns when the move is done;
        raises ``StoreError`` if this attempt failed (the store may retry it later).
        """

    # ------------------------------------------------------------------ reads
    def read_entries(self, slot: int, first: int, last: int) -> list[Entry]:
        """``slot``'s entries ``first..last`` (inclusive) in index order.

        Missing indexes are simply absent (fewer entries come back, never a gap filled).
        """

    def last_entry(self, slot: int) -> tuple[int, int]:
        """(index, term) of ``slot``'s last entry, or (0, 0) when its log is empty."""

    def load_snapshot(self, slot: int) -> tuple[int, int, bytes] | None:
        """(index, term, data) of ``slot``'s snapshot, or None when it has none."""

    def local_slots(self) -> set[int]:
        """Every slot with any data here (log entries, archive or snapshot)."""

    def get_meta(self, key: str) -> str | None:
        """A node-wide key set by ``put_meta``, or None."""

    def messages(self, slot: int, channel: str, ctype: int, where: str, params: Iterable, *, order: str = "ASC",
                 limit: int = 100, max_idx: int | None = None) -> list[Entry]:
        """MSG entries of one channel matching ``where`` (SQL on the columns seq, mid, cmn, with ``?`` for
        ``params``), ordered by seq (``order`` ASC or DESC), at most ``limit``, with index <= ``max_idx``
        when given (the caller passes its commit index, so nothing uncommitted is read)."""

    def count_rows(self, slot: int) -> int:
        """How many entries of ``slot`` are stored (log and archive)."""

    # ------------------------------------------------------------------ backups
    def archived_slots(self) -> set[int]:
        """Slots that have an archive table (for backups: which tables to copy)."""

    def query(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(cursor)`` on a fresh DuckDB cursor off the event loop and return its result.

        The cursor sees every durable write that returned before the call. For backups
        (a consistent copy of every table); ``fn`` must not write.
        """
