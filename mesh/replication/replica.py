"""One slot's replicated log on this node, as leader, follower or learner.

The protocol is Raft's log replication with elections delegated to the controller:
the slot table in etcd names the leader and the term, and a node only leads while
the table names it and its etcd session is alive.

Leader (``become_leader(term)``): it first *recovers* — asks every voter to
``prepare(term)`` (a voter that answers rejects appends of any older term from then
on) and waits for a majority; if a responder has a longer (term, index) log it
fetches the missing entries and adopts that log; then it appends a NOOP barrier of
its term. Entries are appended locally (group commit) and sent to every follower
and learner by one sender greenlet each; an entry is committed once a majority of
the *voters* (leader included) have it durably and it belongs to the current term
(or precedes such an entry). Only then are writers answered. When the barrier
commits the slot is *ready*: everything before it is committed and applied.

Follower (``on_append``): refuses older terms; checks that its log matches the
leader's at ``prev_idx``; drops a conflicting uncommitted suffix (entries of an old
term that the new leader does not have — never acknowledged); appends durably;
applies what the leader says is committed.

Committed entries are applied in order to the slot's ``SlotState`` on every replica;
the leader additionally runs the side effects (delivery, webhooks) through hooks.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import msgpack

from mesh.im.slot_state import SlotState
from mesh.net import wire
from mesh.net.transport import MeshError, RemoteError
from mesh.storage.entries import KIND_MSG, KIND_NOOP, KIND_OP
from mesh.storage.log_store import LogStore, StoreError


class ReplicaHost(Protocol):
    """What a replica needs from the node around it (``Replication`` implements it)."""

    node_id: int
    store: LogStore

    def request(self, peer: int, method: str, payload: Any, timeout: float) -> Any:
        """A mesh request to ``peer`` (prepare, fetch); raises ``MeshError`` on failure."""

    def append(self, peer: int, req: list, timeout: float) -> Any:
        """An append request to ``peer``, coalesced with other slots' appends to it."""

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

NONE, FOLLOWER, LEADER = "none", "follower", "leader"
BATCH = 1000  # entries per append request
TAIL = 2000  # recent entries kept in memory per slot (followers further behind read the store)
HEARTBEAT = 0.3
SNAPSHOT_EVERY = 20000  # applied entries between snapshots
IN_SYNC_SLACK = 2000  # entries a member may trail the commit index and still count as in sync


class NotLeader(Exception):
    """This replica cannot accept the write now (not leader, not ready, lost its term)."""


class SlotReplica:
    def __init__(self, mgr: ReplicaHost, slot: int) -> None:
        self.mgr = mgr
        self.slot = slot
        self.node_id = mgr.node_id
        self.store = mgr.store
        self.state = SlotState(slot)
        self.role = NONE
        self.term = 0  # highest term known
        self.leader_id = 0
        self.ready = False
        self.last_index = 0
        self.last_term = 0
        self.commit_index = 0
        self.snapshot_index = 0
        self.durable_index = 0  # leader: last index durable locally
        self.tail: OrderedDict[int, tuple] = OrderedDict()  # idx -> entry, recent ones
        self.lock = gevent.lock.RLock()  # serialises log changes (append, truncate, recovery)
        self.waiters: dict[int, gevent.event.AsyncResult] = {}
        self.meta: dict[int, Any] = {}  # leader-only facts about a pending entry (sender connection...)
        self.match: dict[int, int] = {}
        self.next_index: dict[int, int] = {}
        self.senders: dict[int, gevent.Greenlet] = {}
        self.voters: list[int] = []
        self.learners: list[int] = []
        self._unflushed: list[tuple] = []
        self._flush_event = gevent.event.Event()
        self._send_event = gevent.event.Event()
        self._writer: gevent.Greenlet | None = None
        self._recovery: gevent.Greenlet | None = None
        self.caught_up = False  # follower: has reached the commit index the leader reported
        self.leader_commit_seen = 0
        self.last_contact = 0.0
        self.stopped = False
        self.loaded = gevent.event.Event()
        self.apply_hook = None  # leader side effects: fn(replica, entry, meta)
        self.ready_hook = None  # fn(replica, applied index when elected), once the leader is ready
        self.applied_at_election = 0

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        snap = self.store.load_snapshot(self.slot)
        if snap is not None:
            idx, term, blob = snap
            self.state = SlotState.from_snapshot(self.slot, msgpack.unpackb(blob, raw=False, strict_map_key=False))
            self.snapshot_index = idx
            self.commit_index = idx
        self.last_index, self.last_term = self.store.last_entry(self.slot)
        if self.last_index < self.snapshot_index:
            self.last_index, self.last_term = self.snapshot_index, snap[1] if snap else 0
        self.durable_index = self.last_index
        self.state.applied = self.snapshot_index
        if self.last_index:
            log.info("slot %d loaded: snapshot at %d, log to %d (term %d)", self.slot, self.snapshot_index,
                     self.last_index, self.last_term)

    # ------------------------------------------------------------------ log access
    def entries(self, first: int, last: int) -> list[tuple]:
        """Entries first..last (inclusive), from memory when recent, else from the store."""
        if first > last:
            return []
        if first in self.tail:
            out = []
            for i in range(first, last + 1):
                e = self.tail.get(i)
                if e is None:
                    break
                out.append(e)
            if len(out) == last - first + 1:
                return out
            return out + self.store.read_entries(self.slot, first + len(out), last)
        return self.store.read_entries(self.slot, first, last)

    def term_at(self, idx: int) -> int:
        if idx == 0:
            return 0
        if idx == self.last_index:
            return self.last_term
        e = self.tail.get(idx)
        if e is not None:
            return e[1]
        got = self.store.read_entries(self.slot, idx, idx)
        return got[0][1] if got else -1

    def _remember(self, entries: list[tuple]) -> None:
        tail = self.tail
        for e in entries:
            if e[2] == KIND_MSG and type(e[3]) is list:
                # a tuple of plain values is untracked by the cycle collector: long-lived
                # messages held here then cost nothing at each full collection
                e = (e[0], e[1], e[2], tuple(e[3]))
            tail[e[0]] = e
        while len(tail) > TAIL:
            tail.popitem(last=False)

    def _forget_after(self, idx: int) -> None:
        for i in [i for i in self.tail if i > idx]:
            del self.tail[i]

    # ------------------------------------------------------------------ roles
    def set_config(self, voters: list[int], learners: list[int]) -> None:
        self.voters = list(voters)
        self.learners = list(learners)
        if self.role == LEADER:
            self._sync_senders()

    def become_follower(self, term: int, leader: int) -> None:
        if term > self.term:
            self.term = term
        if self.role == LEADER:
            self.step_down(f"node {leader} leads at term {term}")
            # it held everything it committed; the new leader's first append says otherwise if not
            self.caught_up = True
        # a follower that was caught up stays so across a change of leader until the new
        # leader's first append (a heartbeat away) shows it is behind: leadership moves
        # must not take healthy nodes out of the load balancer
        self.role = FOLLOWER
        self.leader_id = leader

    def become_none(self) -> None:
        if self.role == LEADER:
            self.step_down("no longer a replica")
        self.role = NONE
        self.leader_id = 0

    def become_leader(self, term: int) -> None:
        """Lead at ``term`` (the table says so): recover, then serve when the barrier commits."""
        if self.role == LEADER and self.term == term:
            return
        if term < self.term:
            log.warning("slot %d: table names us leader at term %d but term %d was promised", self.slot, term,
                        self.term)
            return
        same_leader = self.role == LEADER
        self.term = term
        self.role = LEADER
        self.leader_id = self.node_id
        self.ready = False
        if not same_leader:
            self.applied_at_election = self.state.applied
            self._fail_waiters("leadership changed")
            self.match = {}
            self.next_index = {}
        # An older recovery still running notices the term change at its next check and
        # stops on its own; it is never killed, so it never stops halfway through a write.
        self._recovery = gevent.spawn(self._recover, term)

    def nudge(self) -> None:
        """Wake the leader's senders now instead of at the next heartbeat."""
        self._send_event.set()

    def step_down(self, why: str) -> None:
        log.info("slot %d: stepping down at term %d (%s)", self.slot, self.term, why)
        with self.lock:  # the writer is not mid-write while we hold the lock
            self.ready = False
            self.role = FOLLOWER
            if self._unflushed:
                # Entries proposed but not yet handed to the store: never acknowledged, drop them.
                self._unflushed = []
                self._forget_after(self.durable_index)
                self.last_index = self.durable_index
                self.last_term = self.term_at(self.last_index)
        self._recovery = None  # it stops by itself at its next term check
        for g in self.senders.values():
            g.kill(block=False)
        self.senders = {}
        self._fail_waiters(why)
        self.mgr.status_changed(self)

    def _fail_waiters(self, why: str) -> None:
        waiters, self.waiters = self.waiters, {}
        self.meta = {}
        for ar in waiters.values():
            if not ar.ready():
                ar.set_exception(NotLeader(why))

    def stop(self) -> None:
        self.stopped = True
        if self.role == LEADER:
            self.step_down("stopping")
        self.role = NONE
        if self._writer is not None:
            self._writer.kill(block=False)

    def is_serving(self) -> bool:
        return self.role == LEADER and self.ready and self.mgr.session_alive()

    # ------------------------------------------------------------------ leader: recovery
    def _recover(self, term: int) -> None:
        t0 = time.monotonic()
        try:
            while not self.stopped and self.role == LEADER and self.term == term:
                if self._try_recover(term):
                    break
                gevent.sleep(0.2)
            else:
                return
            with self.lock:
                if self.role != LEADER or self.term != term:
                    return
                self._sync_senders()
                barrier = self._append_local([(KIND_NOOP, None)])
            ar = self.waiters[barrier]
            ar.get()  # raises NotLeader if we lose the term first
            if self.role != LEADER or self.term != term:
                return
            self.ready = True
            if self.ready_hook is not None:
                try:
                    self.ready_hook(self, self.applied_at_election)
                except Exception:
                    log.exception("slot %d: leader-ready hook failed", self.slot)
            log.info("slot %d: leader ready at term %d in %.0f ms (log %d, commit %d)", self.slot, term,
                     (time.monotonic() - t0) * 1000, self.last_index, self.commit_index)
            self.mgr.status_changed(self)
        except NotLeader:
            return
        except gevent.GreenletExit:
            raise
        except Exception:
            log.exception("slot %d: recovery at term %d failed", self.slot, term)

    def _try_recover(self, term: int) -> bool:
        """Collect promises from a majority of voters; adopt the most up-to-date log among them."""
        answers: dict[int, dict] = {self.node_id: {"ok": True, "last_index": self.last_index,
                                                   "last_term": self.last_term, "commit": self.commit_index}}
        others = [v for v in self.voters if v != self.node_id]

        def ask(v: int) -> None:
            try:
                r = self.mgr.request(v, wire.REPL_PREPARE, [self.slot, term, self.node_id], timeout=1.0)
                if r.get("ok"):
                    answers[v] = r
                elif r.get("term", 0) > term:
                    self.term = max(self.term, r["term"])
            except MeshError:
                pass
        gevent.joinall([gevent.spawn(ask, v) for v in others], timeout=1.5)
        need = len(self.voters) // 2 + 1
        if self.node_id not in self.voters:
            return False
        if len(answers) < need:
            log.info("slot %d: recovery at term %d has %d/%d promises; waiting", self.slot, term, len(answers), need)
            return False
        best_node, best = max(answers.items(), key=lambda kv: (kv[1]["last_term"], kv[1]["last_index"]))
        if (best["last_term"], best["last_index"]) > (self.last_term, self.last_index):
            log.info("slot %d: adopting node %s's longer log (%d@%d > %d@%d)", self.slot, best_node,
                     best["last_index"], best["last_term"], self.last_index, self.last_term)
            self._adopt_from(best_node, term, best["last_index"])
        return True

    def _adopt_from(self, node: int, term: int, upto: int) -> None:
        start = self.commit_index + 1
        while start <= upto:
            end = min(upto, start + 4999)
            got = self.mgr.request(node, wire.REPL_FETCH, [self.slot, term, start, end], timeout=10.0)
            entries = [tuple(e) for e in got]
            if not entries:
                raise NotLeader(f"node {node} returned no entries from {start}")
            with self.lock:
                if self.role != LEADER or self.term != term:
                    raise NotLeader("term changed during recovery")
                self._merge(entries)
            start = entries[-1][0] + 1

    def _merge(self, entries: list[tuple]) -> None:
        """Append ``entries`` (which follow a matching prefix), dropping our conflicting suffix."""
        first_new = None
        for e in entries:
            idx = e[0]
            if idx <= self.last_index:
                if self.term_at(idx) == e[1]:
                    continue
                if idx <= self.commit_index:
                    log.error("slot %d: committed entry %d conflicts with the leader's; refusing", self.slot, idx)
                    raise NotLeader("conflict below the commit index")
                self._truncate(idx - 1)
            first_new = idx
            break
        if first_new is None:
            return
        new = [e for e in entries if e[0] >= first_new]
        if new[0][0] != self.last_index + 1:
            log.error("slot %d: merge of %d..%d does not follow the log (%d)", self.slot, new[0][0], new[-1][0],
                      self.last_index)
            raise NotLeader("log continuity check failed")
        self.store.append(self.slot, new)
        self._remember(new)
        self.last_index, self.last_term = new[-1][0], new[-1][1]
        self.durable_index = self.last_index

    def _truncate(self, idx: int) -> None:
        dropped = self.last_index - idx
        log.warning("slot %d: discarding %d unacknowledged entr%s after %d (not on the leader's log)", self.slot,
                    dropped, "y" if dropped == 1 else "ies", idx)
        self.store.truncate_after(self.slot, idx)
        self._forget_after(idx)
        self.last_index = idx
        self.last_term = self.term_at(idx) if idx else 0
        self.durable_index = min(self.durable_index, idx)
        self.mgr.count_truncated(dropped)

    # ------------------------------------------------------------------ leader: proposing
    def _append_local(self, items: list[tuple[int, Any]]) -> int:
        """Add entries of the current term to the log; returns the last index. Caller holds the lock."""
        entries = []
        for kind, data in items:
            self.last_index += 1
            e = (self.last_index, self.term, kind, data)
            entries.append(e)
            self.waiters[self.last_index] = gevent.event.AsyncResult()
        self.last_term = self.term
        self._remember(entries)
        self._unflushed.extend(entries)
        self._flush_event.set()
        self._send_event.set()
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._write_loop)
        return self.last_index

    def propose(self, kind: int, data: Any, meta: Any = None) -> gevent.event.AsyncResult:
        """Append one entry; the result resolves with the apply result once committed."""
        if not self.is_serving():
            raise NotLeader(f"slot {self.slot} is not served here")
        idx = self._append_local([(kind, data)])
        if meta is not None:
            self.meta[idx] = meta
        return self.waiters[idx]

    def propose_many(self, items: list[tuple[int, Any, Any]]) -> list[gevent.event.AsyncResult]:
        if not self.is_serving():
            raise NotLeader(f"slot {self.slot} is not served here")
        last = self._append_local([(k, d) for k, d, _m in items])
        first = last - len(items) + 1
        for i, (_k, _d, m) in enumerate(items):
            if m is not None:
                self.meta[first + i] = m
        return [self.waiters[i] for i in range(first, last + 1)]

    def propose_op(self, op: str, args: dict, timeout: float = 10.0) -> Any:
        """Replicate a metadata operation and return its result (blocks until committed)."""
        ar = self.propose(KIND_OP, [op, args])
        try:
            return ar.get(timeout=timeout)
        except gevent.Timeout:
            raise NotLeader(f"slot {self.slot}: no majority within {timeout:.0f}s") from None

    def _write_loop(self) -> None:
        while not self.stopped:
            if not self._unflushed:
                self._flush_event.clear()
                self._flush_event.wait()
                continue
            with self.lock:  # never interleave with a follower-side merge or truncation
                batch, self._unflushed = self._unflushed, []
                if not batch or self.role != LEADER:
                    continue
                if batch[0][0] != self.durable_index + 1:
                    log.error("slot %d: append of %d..%d does not follow the durable log (%d); stepping down",
                              self.slot, batch[0][0], batch[-1][0], self.durable_index)
                    self.step_down("log continuity check failed")
                    continue
                try:
                    self.store.append(self.slot, batch)
                except StoreError as exc:
                    log.error("slot %d: local append failed (%s); stepping down", self.slot, exc)
                    self.step_down("local store failure")
                    return
                self.durable_index = max(self.durable_index, batch[-1][0])
            self._advance_commit()

    # ------------------------------------------------------------------ leader: replication
    def _sync_senders(self) -> None:
        targets = {n for n in self.voters + self.learners if n != self.node_id}
        for n in list(self.senders):
            if n not in targets:
                self.senders.pop(n).kill(block=False)
        for n in targets:
            g = self.senders.get(n)
            if g is not None and not g.dead and getattr(g, "term", None) == self.term:
                continue
            if g is not None:
                g.kill(block=False)
            self.next_index.setdefault(n, self.last_index + 1)
            self.match.setdefault(n, 0)
            g = gevent.spawn(self._sender, n, self.term)
            g.term = self.term
            self.senders[n] = g

    def _sender(self, peer: int, term: int) -> None:
        backoff = 0.05
        while self.role == LEADER and self.term == term and not self.stopped:
            nxt = self.next_index.get(peer, self.last_index + 1)
            if nxt > self.last_index:
                self._send_event.clear()
                # heartbeats of every slot fall on the same ticks, so the append pipe sends
                # them to each peer as one request
                self._send_event.wait(timeout=HEARTBEAT - time.monotonic() % HEARTBEAT + 0.001)
            nxt = self.next_index.get(peer, self.last_index + 1)
            last = min(self.last_index, nxt + BATCH - 1)
            try:
                entries = self.entries(nxt, last) if nxt <= last else []
                prev = nxt - 1
                req = [self.slot, term, self.node_id, prev, self.term_at(prev), [list(e) for e in entries],
                       self.commit_index]
                r = self.mgr.append(peer, req, timeout=5.0)
            except (MeshError, StoreError) as exc:
                if not isinstance(exc, RemoteError):
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                else:
                    log.warning("slot %d: append to node %s failed: %s", self.slot, peer, exc)
                    gevent.sleep(0.5)
                continue
            backoff = 0.05
            if self.role != LEADER or self.term != term:
                return
            if r.get("ok"):
                self.match[peer] = max(self.match.get(peer, 0), r["match"])
                self.next_index[peer] = self.match[peer] + 1
                self._advance_commit()
                self.mgr.in_sync_maybe_changed(self)
            elif r.get("term", 0) > term:
                log.info("slot %d: node %s knows term %d > %d; stepping down", self.slot, peer, r["term"], term)
                self.term = max(self.term, r["term"])
                self.step_down("a newer term exists")
                return
            else:
                hint = int(r.get("last_index", nxt - 1))
                self.next_index[peer] = max(1, min(nxt - 1, hint + 1))

    def _advance_commit(self) -> None:
        if self.role != LEADER:
            return
        voters = self.voters or [self.node_id]
        positions = sorted((self.durable_index if v == self.node_id else self.match.get(v, 0) for v in voters),
                           reverse=True)
        n = positions[len(voters) // 2]
        if n > self.commit_index and self.term_at(n) == self.term:
            if not self.mgr.session_alive():
                return  # fenced: no etcd session, no acknowledgements
            self.commit_index = n
            # followers learn the new commit index with the next append or heartbeat
            self._apply_committed()

    # ------------------------------------------------------------------ applying
    def _apply_committed(self) -> None:
        while self.state.applied < self.commit_index:
            first = self.state.applied + 1
            last = min(self.commit_index, first + 4999)
            for e in self.entries(first, last):
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
                ar = self.waiters.pop(e[0], None)
                meta = self.meta.pop(e[0], None)
                if self.role == LEADER and self.apply_hook is not None and kind == KIND_MSG:
                    try:
                        self.apply_hook(self, e, meta)
                    except Exception:
                        log.exception("slot %d: side effects of entry %d failed", self.slot, e[0])
                if ar is not None and not ar.ready():
                    ar.set(result)
        if self.state.applied - self.snapshot_index >= SNAPSHOT_EVERY:
            self.mgr.schedule_snapshot(self)

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
        if term < self.term:
            return {"ok": False, "term": self.term}
        if term > self.term and self.role == LEADER:
            self.term = term
            self.step_down(f"node {leader} prepares term {term}")
        self.term = term
        if leader != self.node_id:
            self.role = FOLLOWER
            self.leader_id = leader
        return {"ok": True, "last_index": self.last_index, "last_term": self.last_term, "commit": self.commit_index}

    def on_append(self, term: int, leader: int, prev_idx: int, prev_term: int, entries: list, commit: int) -> dict:
        if term < self.term:
            return {"ok": False, "term": self.term, "last_index": self.last_index}
        with self.lock:
            if term > self.term or self.role == LEADER:
                if self.role == LEADER:
                    self.term = term
                    self.step_down(f"node {leader} appends at term {term}")
                self.term = term
            self.role = FOLLOWER
            self.leader_id = leader
            self.last_contact = time.monotonic()
            if prev_idx > self.last_index:
                return {"ok": False, "term": self.term, "last_index": self.last_index}
            if prev_idx > self.commit_index and self.term_at(prev_idx) != prev_term:
                return {"ok": False, "term": self.term, "last_index": max(self.commit_index, prev_idx - BATCH)}
            if entries:
                self._merge([tuple(e) for e in entries])
            match = prev_idx + len(entries)
            new_commit = min(commit, match)
            self.leader_commit_seen = commit
            if new_commit > self.commit_index:
                self.commit_index = new_commit
                self._apply_committed()
            was = self.caught_up
            self.caught_up = self.last_index >= commit and self.commit_index >= commit
            if self.caught_up != was:
                self.mgr.status_changed(self)
            return {"ok": True, "term": self.term, "match": match, "last_index": self.last_index}

    def on_fetch(self, first: int, last: int) -> list:
        return [list(e) for e in self.entries(first, min(last, self.last_index))]

    # ------------------------------------------------------------------ introspection
    def in_sync(self) -> frozenset[int]:
        """Members close enough to the commit index to take over leadership or be promoted.

        A follower that is being fed normally trails the commit index by a batch in
        flight, so "in sync" allows ``IN_SYNC_SLACK`` entries; otherwise the set would
        flap under load and every flap is an etcd write watched by every node.
        """
        if self.role != LEADER:
            return frozenset()
        members = set(self.voters + self.learners)
        floor = self.commit_index - IN_SYNC_SLACK
        return frozenset({self.node_id} | {n for n in members if self.match.get(n, 0) >= max(1, floor)
                                           or (self.commit_index == 0)})

    def info(self) -> dict:
        return {"slot": self.slot, "role": self.role, "term": self.term, "leader": self.leader_id,
                "ready": self.ready, "last_index": self.last_index, "last_term": self.last_term,
                "commit_index": self.commit_index, "applied": self.state.applied,
                "snapshot_index": self.snapshot_index, "caught_up": self.caught_up,
                "match": dict(self.match) if self.role == LEADER else {}}
