"""One slot's replicated log on this node: the gevent shell around ``SlotCore``.

Every decision (term checks, the append consistency check and conflict cuts, the
commit index, recovery, in-sync members, next-index backoff) is made by the pure
``mesh.replication.core.SlotCore``; this module only does the I/O it asks for:

* persists what a core ``Ready`` names — hard state, log cut, entries — before any
  answer or request leaves (``_step``);
* hands the leader's appends to the node's per-peer senders (``append_pipe``: it
  asks ``append_request`` and steps the core with ``on_append_result``) and sends
  recovery requests;
* writes the leader's own entries (one writer greenlet, group commit);
* applies committed entries to the slot's ``SlotState`` in one place (``_apply``):
  each entry once, in index order, whichever greenlet handed them over; the leader
  also runs the side-effect hook, which must not block.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import msgpack

from mesh.im.slot_state import SlotState
from mesh.net import wire
from mesh.net.transport import MeshError, RemoteError
from mesh.replication.core import FOLLOWER, LEADER, NONE, HardState, NotLeader, Ready, SlotCore
from mesh.storage.entries import KIND_MSG, KIND_OP
from mesh.storage.log_store import LogStore, StoreError

__all__ = ["FOLLOWER", "LEADER", "NONE", "NotLeader", "ReplicaHost", "SlotReplica"]


class ReplicaHost(Protocol):
    """What a replica needs from the node around it (``Replication`` implements it)."""

    node_id: int
    store: LogStore

    def request(self, peer: int, method: str, payload: Any, timeout: float) -> Any:
        """A mesh request to ``peer`` (prepare, fetch); raises ``MeshError`` on failure."""

    def lead(self, replica: SlotReplica, peers: set[int]) -> None:
        """Carry the replica's appends to ``peers`` (``mesh.replication.append_pipe.PeerSenders``)."""

    def unlead(self, replica: SlotReplica) -> None:
        """Stop carrying the replica's appends."""

    def wake(self, replica: SlotReplica) -> None:
        """The replica has something new for its peers: send it soon."""

    def session_alive(self) -> bool:
        """Whether this node's etcd session is alive (a leader serves only while it is)."""

    def status_changed(self, replica: SlotReplica) -> None:
        """The replica's role, term or readiness changed: report it."""

    def in_sync_maybe_changed(self, replica: SlotReplica) -> None:
        """The leader's in-sync member set may have changed: report it if it did."""

    def schedule_snapshot(self, replica: SlotReplica) -> None:
        """The replica applied enough entries to be worth a snapshot: take one soon."""

    def count_truncated(self, n: int) -> None:
        """Count ``n`` uncommitted entries dropped by a conflict truncation."""


log = logging.getLogger("mesh.replication.replica")

SNAPSHOT_EVERY = 20000  # applied entries between snapshots


class _StoreReader:
    __slots__ = ("store", "slot")

    def __init__(self, store: LogStore, slot: int) -> None:
        self.store = store
        self.slot = slot

    def read_entries(self, first: int, last: int) -> list[tuple]:
        return self.store.read_entries(self.slot, first, last)


class SlotReplica:
    def __init__(self, mgr: ReplicaHost, slot: int) -> None:
        self.mgr = mgr
        self.slot = slot
        self.node_id = mgr.node_id
        self.store = mgr.store
        self.state = SlotState(slot)
        self.core = SlotCore(self.node_id, slot, _StoreReader(self.store, slot), session_alive=mgr.session_alive)
        self.snapshot_index = 0
        self.lock = gevent.lock.RLock()  # serialises core steps with their log writes
        self.waiters: dict[int, gevent.event.AsyncResult] = {}
        self.meta: dict[int, Any] = {}  # leader-only facts about a pending entry (sender connection...)
        self._backoff: dict[int, float] = {}  # peer -> seconds to wait after the next failed append
        self._flush_event = gevent.event.Event()
        self._writer: gevent.Greenlet | None = None
        self._apply_q: deque[tuple] = deque()
        self._applying = False
        self._leading = 0  # the term this shell runs leader machinery for (0: none)
        self._hard_unsaved: HardState | None = None
        self._ready_term = 0  # the term whose leadership ran the ready hook and serves
        self._ready_started = 0  # the term whose ready hook greenlet was started
        self.last_contact = 0.0
        self.stopped = False
        self.loaded = gevent.event.Event()
        self.apply_hook = None  # leader side effects: fn(replica, entry, meta); must not block
        self.ready_hook = None  # fn(replica, applied index when elected), once the leader is ready
        self.applied_at_election = 0
        self.led_at = 0.0
        self.barrier_at = 0.0  # when this leadership's barrier committed (recovery done; applying follows)

    # ------------------------------------------------------------------ views of the core
    role = property(lambda self: self.core.role)
    term = property(lambda self: self.core.term)
    leader_id = property(lambda self: self.core.leader_id)
    ready = property(lambda self: self.core.ready and self._ready_term == self.core.term)
    last_index = property(lambda self: self.core.last_index)
    last_term = property(lambda self: self.core.last_term)
    commit_index = property(lambda self: self.core.commit_index)
    durable_index = property(lambda self: self.core.durable_index)
    caught_up = property(lambda self: self.core.caught_up)
    leader_commit_seen = property(lambda self: self.core.leader_commit_seen)
    match = property(lambda self: self.core.match)
    voters = property(lambda self: self.core.voters)
    learners = property(lambda self: self.core.learners)
    stuck = property(lambda self: self.core.stuck)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        snap = self.store.load_snapshot(self.slot)
        snap_idx = snap_term = 0
        if snap is not None:
            snap_idx, snap_term, blob = snap
            self.state = SlotState.from_snapshot(self.slot, msgpack.unpackb(blob, raw=False, strict_map_key=False))
        last_index, last_term = self.store.last_entry(self.slot)
        if last_index < snap_idx:
            last_index, last_term = snap_idx, snap_term
        term, led = self.store.load_hard_state(self.slot)
        self.snapshot_index = snap_idx
        self.state.applied = snap_idx
        self.core = SlotCore(self.node_id, self.slot, _StoreReader(self.store, self.slot),
                             hard=HardState(term, led), last_index=last_index, last_term=last_term,
                             snapshot_index=snap_idx, snapshot_term=snap_term,
                             session_alive=self.mgr.session_alive)
        self.core.now = time.monotonic()
        if last_index or term:
            log.info("slot %d loaded: snapshot at %d, log to %d (term %d), hard state term %d led %d", self.slot,
                     snap_idx, last_index, last_term, term, led)

    def _reload_log(self, commit_before: int | None = None) -> None:
        """After a failed log write: believe the store again about where the log ends."""
        last_index, last_term = self.store.last_entry(self.slot)
        if last_index < self.snapshot_index:
            last_index, last_term = self.snapshot_index, self.core.log.snapshot_term
        self.core.reload(last_index, last_term, commit_before)

    # ------------------------------------------------------------------ log access
    def entries(self, first: int, last: int) -> list[tuple]:
        """Entries first..last (inclusive), from memory when recent, else from the store."""
        return self.core.log.entries(first, last)

    def term_at(self, idx: int) -> int:
        return self.core.log.term_at(idx)

    # ------------------------------------------------------------------ driving the core
    def _step(self, fn, *args) -> Any:
        """Run one core step, persist what it asks for, then send, apply and report."""
        failed = None
        with self.lock:
            commit_before = self.core.commit_index
            result = fn(*args)
            rd = self.core.take_ready()
            try:
                self._persist(rd, commit_before)
            except StoreError as exc:
                failed = exc  # nothing is sent or answered; committed entries still get applied
        self._after(rd)
        if failed is not None:
            raise failed
        return result

    def _persist(self, rd: Ready, commit_before: int) -> None:
        hard = rd.hard or self._hard_unsaved
        try:
            if hard is not None:
                self._hard_unsaved = hard  # kept for a retry if this write fails
                self.store.save_hard_state(self.slot, hard.term, hard.led)
                self._hard_unsaved = None
            if rd.cut is not None:
                log.warning("slot %d: discarding %d unacknowledged entr%s after %d (not on the leader's log)",
                            self.slot, rd.truncated, "y" if rd.truncated == 1 else "ies", rd.cut)
                self.store.truncate_after(self.slot, rd.cut)
                self.mgr.count_truncated(rd.truncated)
            if rd.persist:
                self.store.append(self.slot, rd.persist)
        except StoreError as exc:
            log.error("slot %d: log write failed (%s); reloading the log position", self.slot, exc)
            rd.send.clear()
            self.core.recovery_failed()
            self._reload_log(commit_before)
            raise

    def _after(self, rd: Ready) -> None:
        term = self.core.term
        if rd.became_ready:
            self.barrier_at = time.monotonic()
        for peer, method, payload in rd.send:
            gevent.spawn(self._recovery_request, peer, method, payload, term)
        if rd.apply:
            self._apply(rd.apply)
        if self._leading and (self.core.role != LEADER or self.core.term != self._leading):
            self._left_leadership("lost the term")
        self._maybe_ready()
        if rd.status:
            self.mgr.status_changed(self)
        if self.core.role == LEADER:
            self.mgr.in_sync_maybe_changed(self)

    def tick(self) -> None:
        if self.core.role == LEADER:
            self._step(self.core.tick, time.monotonic())
            if self.core.unflushed:
                self._wake_writer()

    # ------------------------------------------------------------------ roles
    def set_config(self, voters: list[int], learners: list[int]) -> None:
        self._step(self.core.set_config, voters, learners)
        if self.core.role == LEADER:
            self._sync_senders()

    def become_follower(self, term: int, leader: int) -> None:
        self._step(self.core.become_follower, term, leader)

    def become_none(self) -> None:
        self._step(self.core.become_none)

    def become_leader(self, term: int) -> None:
        """Lead at ``term`` (the table says so): recover, then serve when the barrier commits."""
        if self.core.role == LEADER and self.core.term == term:
            return
        self.core.now = time.monotonic()
        if self._leading:
            self._left_leadership(f"leading again at term {term}")
        was = self.state.applied
        if not self._step(self.core.become_leader, term):
            log.warning("slot %d: the table names us leader at term %d, which may not be led here "
                        "(term %d known, term %d led before); waiting for a new term", self.slot, term,
                        self.core.term, self.core.hard.led)
            return
        self._leading = term
        self.led_at = time.monotonic()
        self.applied_at_election = was
        self._fail_waiters("leadership changed")
        self._sync_senders()
        if self.core.unflushed:
            self._wake_writer()

    def nudge(self) -> None:
        """Wake the leader's senders now instead of at the next heartbeat."""
        self.mgr.wake(self)

    def step_down(self, why: str) -> None:
        log.info("slot %d: stepping down at term %d (%s)", self.slot, self.core.term, why)
        self._step(self.core.step_down, why)  # under the lock: the writer is not mid-write
        if self._leading:
            self._left_leadership(why)
        self.mgr.status_changed(self)

    def _left_leadership(self, why: str) -> None:
        self._leading = 0
        self.mgr.unlead(self)
        self._ready_term = 0
        self._fail_waiters(why)

    def _fail_waiters(self, why: str) -> None:
        waiters, self.waiters = self.waiters, {}
        self.meta = {}
        for ar in waiters.values():
            if not ar.ready():
                ar.set_exception(NotLeader(why))

    def stop(self) -> None:
        self.stopped = True
        if self.core.role == LEADER:
            self.step_down("stopping")
        self.core.role = NONE
        if self._writer is not None:
            self._writer.kill(block=False)

    def is_serving(self) -> bool:
        return self.core.is_serving() and self._ready_term == self.core.term

    def _maybe_ready(self) -> None:
        """Once the barrier is committed and applied: run the ready hook, then serve.

        The hook runs before any proposal of this leadership is accepted (it resets the
        message sequencer, whose seqs continue from the applied state).
        """
        c = self.core
        if c.role != LEADER or not c.ready or self._ready_term == c.term or self._ready_started == c.term \
                or self._applying or c.applied_done < c.barrier:
            return
        # in its own greenlet (like the recovery before): a hook that takes long must not
        # hold up the sender or the writer that happened to commit the barrier
        self._ready_started = c.term
        gevent.spawn(self._run_ready_hook, c.term)

    def _run_ready_hook(self, term: int) -> None:
        c = self.core
        if c.role != LEADER or c.term != term or not c.ready:
            return
        self._ready_term = term  # serving from here: the hook below resets the sequencer before any yield
        now = time.monotonic()
        log.info("slot %d: leader ready at term %d in %.0f ms (recovered in %.0f ms; applied from %d; log %d, "
                 "commit %d)", self.slot, term, (now - self.led_at) * 1000,
                 (max(self.barrier_at, self.led_at) - self.led_at) * 1000, self.applied_at_election, c.last_index,
                 c.commit_index)
        if self.ready_hook is not None:
            try:
                self.ready_hook(self, self.applied_at_election)
            except Exception:
                log.exception("slot %d: leader-ready hook failed", self.slot)
        self.mgr.status_changed(self)

    # ------------------------------------------------------------------ leader: recovery requests
    def _recovery_request(self, peer: int, method: str, payload: Any, term: int) -> None:
        try:
            reply = self.mgr.request(peer, method, payload, timeout=10.0 if method == wire.REPL_FETCH else 1.0)
        except MeshError as exc:
            log.info("slot %d: recovery %s to node %s failed: %s", self.slot, method, peer, exc)
            reply = None
        try:
            if method == wire.REPL_PREPARE:
                self._step(self.core.on_prepare_reply, peer, term, reply)
            else:
                self._step(self.core.on_fetch_reply, peer, term, reply)
        except StoreError:
            pass  # logged; the core starts a new recovery round
        if self.core.unflushed:
            self._wake_writer()
        self.mgr.wake(self)

    # ------------------------------------------------------------------ leader: proposing
    def propose(self, kind: int, data: Any, meta: Any = None) -> gevent.event.AsyncResult:
        """Append one entry; the result resolves with the apply result once committed."""
        return self.propose_many([(kind, data, meta)])[0]

    def propose_many(self, items: list[tuple[int, Any, Any]]) -> list[gevent.event.AsyncResult]:
        last = self.core.propose([(k, d) for k, d, _m in items])
        first = last - len(items) + 1
        out = []
        for i, (_k, _d, m) in enumerate(items):
            ar = gevent.event.AsyncResult()
            self.waiters[first + i] = ar
            if m is not None:
                self.meta[first + i] = m
            out.append(ar)
        self._wake_writer()
        self.mgr.wake(self)
        return out

    def propose_op(self, op: str, args: dict, timeout: float = 10.0) -> Any:
        """Replicate a metadata operation and return its result (blocks until committed)."""
        ar = self.propose(KIND_OP, [op, args])
        try:
            return ar.get(timeout=timeout)
        except gevent.Timeout:
            raise NotLeader(f"slot {self.slot}: no majority within {timeout:.0f}s") from None

    def _wake_writer(self) -> None:
        self._flush_event.set()
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._write_loop)

    def _write_loop(self) -> None:
        while not self.stopped:
            if not self.core.unflushed:
                self._flush_event.clear()
                self._flush_event.wait()
                continue
            with self.lock:  # never interleave with a follower-side merge or truncation
                batch = self.core.take_unflushed()
                if not batch or self.core.role != LEADER:
                    continue
                try:
                    self.store.append(self.slot, batch)
                except StoreError as exc:
                    log.error("slot %d: local append failed (%s); stepping down", self.slot, exc)
                    self.core.unflushed = batch + self.core.unflushed  # step_down drops them
                    self.step_down("local store failure")
                    self._reload_log()
                    return
            self._step(self.core.persisted, batch[-1][0])

    # ------------------------------------------------------------------ leader: replication
    def _sync_senders(self) -> None:
        """Have the node's per-peer senders carry this slot to its followers and learners."""
        self.mgr.lead(self, {n for n in self.core.voters + self.core.learners if n != self.node_id})

    def append_request(self, peer: int, heartbeat: bool) -> wire.Append | None:
        """This leadership's next append to ``peer`` (``mesh.replication.append_pipe`` sends it), or None."""
        if not self._leading or self.stopped:
            return None
        return self.core.append_request(peer, heartbeat=heartbeat)

    def on_append_result(self, peer: int, req: wire.Append, reply: Any) -> float:
        """Step the core with ``peer``'s answer to ``req`` (a dict, or the ``MeshError`` it failed with);
        returns how long to wait before the next append to ``peer``."""
        if isinstance(reply, MeshError):
            if isinstance(reply, RemoteError):
                log.warning("slot %d: append to node %s failed: %s", self.slot, peer, reply)
                return 0.5
            backoff = self._backoff.get(peer, 0.05)
            self._backoff[peer] = min(backoff * 2, 1.0)
            return backoff
        self._backoff.pop(peer, None)
        self.core.now = time.monotonic()
        self._step(self.core.on_append_reply, peer, req, reply)
        return 0.0

    # ------------------------------------------------------------------ applying
    def _apply(self, entries: list[tuple]) -> None:
        """Apply committed entries in order; a call while another is applying only queues them."""
        self._apply_q.extend(entries)
        if self._applying:
            return
        self._applying = True
        try:
            q = self._apply_q
            while q:
                e = q.popleft()
                self._apply_one(e)
        finally:
            self._applying = False
        self._maybe_ready()
        if self.state.applied - self.snapshot_index >= SNAPSHOT_EVERY:
            self.mgr.schedule_snapshot(self)

    def _apply_one(self, e: tuple) -> None:
        if e[0] != self.state.applied + 1:
            log.error("slot %d: entry %d handed to apply after %d; skipped", self.slot, e[0], self.state.applied)
            return
        result = None
        kind = e[2]
        try:
            if kind == KIND_MSG:
                self.state.apply_msg(e[0], e[3])
            elif kind == KIND_OP:
                result = self.state.apply_op(e[0], e[3][0], e[3][1])
            else:
                self.state.applied = e[0]
        except Exception:
            log.exception("slot %d: applying entry %d failed", self.slot, e[0])
            self.state.applied = e[0]
        self.core.applied_to(e[0])
        ar = self.waiters.pop(e[0], None)
        meta = self.meta.pop(e[0], None)
        if self.core.role == LEADER and self.apply_hook is not None and kind == KIND_MSG:
            try:
                self.apply_hook(self, e, meta)
            except Exception:
                log.exception("slot %d: side effects of entry %d failed", self.slot, e[0])
        if ar is not None and not ar.ready():
            ar.set(result)

    def snapshot(self) -> None:
        idx = self.state.applied
        if idx <= self.snapshot_index:
            return
        blob = msgpack.packb(self.state.to_snapshot(), use_bin_type=True)
        self.store.save_snapshot(self.slot, idx, self.term_at(idx), blob)
        self.snapshot_index = idx
        log.info("slot %d: snapshot at %d (%d bytes)", self.slot, idx, len(blob))

    # ------------------------------------------------------------------ follower side
    def on_prepare(self, term: int, leader: int) -> dict:
        return self._step(self.core.on_prepare, wire.Prepare(self.slot, term, leader))

    def on_append(self, term: int, leader: int, prev_idx: int, prev_term: int, entries: list, commit: int) -> dict:
        self.last_contact = time.monotonic()
        return self._step(self.core.on_append, wire.Append(self.slot, term, leader, prev_idx, prev_term, entries,
                                                            commit))

    def on_fetch(self, first: int, last: int) -> list:
        return self.core.on_fetch(wire.Fetch(self.slot, self.core.term, first, last))

    # ------------------------------------------------------------------ introspection
    def in_sync(self) -> frozenset[int]:
        """Members close enough to the commit index to take over leadership or be promoted."""
        return self.core.in_sync()

    def info(self) -> dict:
        c = self.core
        return {"slot": self.slot, "role": c.role, "term": c.term, "leader": c.leader_id,
                "ready": c.ready, "last_index": c.last_index, "last_term": c.last_term,
                "commit_index": c.commit_index, "applied": self.state.applied,
                "snapshot_index": self.snapshot_index, "caught_up": c.caught_up, "stuck": c.stuck, "phase": c.phase,
                "serving": self.is_serving(),
                "match": dict(c.match) if c.role == LEADER else {}}
