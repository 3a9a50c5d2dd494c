"""The decisions of one slot's replicated log on one node, as a pure state machine.

Like etcd raft's ``raft.go``: no gevent, sockets, disk or clock. Inputs are method
calls for messages (``on_append``, ``on_prepare``, replies to our own requests),
proposals and ``tick(now)``; outputs are collected in a ``Ready`` (``take_ready``):
hard state and entries to make durable *before* any answer leaves the node, requests
to send, and committed entries to apply. The gevent shell (``replica.py``) and the
deterministic simulation (``tests/sim``) both drive this class.

The protocol is Raft's log replication with elections delegated to the controller:
the slot table names the leader and the term. A new leader *recovers*: it asks every
voter to ``prepare(term)`` (a voter that promises rejects older terms from then on,
and persists that promise before answering), adopts the most up-to-date log of a
majority (fetching what it lacks), then appends a NOOP barrier of its term; when the
barrier commits the slot is *ready*. An entry commits once a majority of voters hold
it durably and it belongs to the current term (or precedes such an entry).

Rules that close known holes:

* recovery that stalls (lost promise, failed fetch) starts a new round after
  ``RECOVERY_TIMEOUT`` (``FETCH_TIMEOUT`` per fetched batch); a leader not ready and
  making no recovery progress, or without a majority's answers, for ``STUCK_AFTER``
  seconds says so (``stuck``) and the controller moves the slot;
* every committed entry is handed to the applier exactly once, in index order;
* a node never leads twice at the same term (``HardState.led``): after stepping
  down it may have sent entries it never made durable, so leading again at that
  term could put new content at an (index, term) a follower already holds;
* the highest term known and the last term led are durable (``HardState``) and are
  persisted before a promise or an append is answered.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mesh.net import wire
from mesh.replication.log import LogConflict, LogReader, SlotLog
from mesh.storage.entries import KIND_NOOP

NONE, FOLLOWER, LEADER = "none", "follower", "leader"
BATCH = 1000  # entries per append request
FETCH_BATCH = 5000  # entries per recovery fetch
IN_SYNC_SLACK = 2000  # entries a member may trail the commit index and still count as in sync
RECOVERY_TIMEOUT = 2.0  # seconds a recovery round may wait for promises
FETCH_TIMEOUT = 10.0  # seconds a recovery round may wait for one batch of fetched entries
STUCK_AFTER = 5.0  # seconds not ready without progress, or without a majority's answers, before "stuck"


class NotLeader(Exception):
    """This replica cannot accept the write now (not leader, not ready, lost its term)."""


@dataclass(frozen=True)
class HardState:
    term: int = 0  # the highest term known (promised to a leader or seen in its appends)
    led: int = 0  # the last term this node led at; it never leads at that term again once it left it


@dataclass
class Ready:
    """What the shell must do, in order: persist ``hard``, cut the log after ``cut``,
    persist ``persist``; only then send ``send`` and answer; apply ``apply`` in order."""

    hard: HardState | None = None
    cut: int | None = None
    persist: list[tuple] = field(default_factory=list)
    send: list[tuple[int, str, Any]] = field(default_factory=list)  # (peer, method, payload)
    apply: list[tuple] = field(default_factory=list)
    truncated: int = 0  # uncommitted entries dropped by a conflict cut
    status: bool = False  # role, term, readiness or stuck changed: report
    became_ready: bool = False  # the leader's barrier committed just now

    def empty(self) -> bool:
        return (self.hard is None and self.cut is None and not self.persist and not self.send
                and not self.apply and not self.status and not self.became_ready)


class SlotCore:
    def __init__(self, node_id: int, slot: int, reader: LogReader, *, hard: HardState = HardState(),
                 last_index: int = 0, last_term: int = 0, snapshot_index: int = 0, snapshot_term: int = 0,
                 session_alive: Callable[[], bool] = lambda: True) -> None:
        self.node_id = node_id
        self.slot = slot
        self.log = SlotLog(reader, last_index, last_term, snapshot_index, snapshot_term)
        self.hard = hard
        self.session_alive = session_alive
        self.role = NONE
        self.leader_id = 0
        self.ready = False
        self.commit_index = snapshot_index
        self.applied = snapshot_index  # last index handed to the applier
        self.applied_done = snapshot_index  # last index the applier reports applied
        self.durable_index = self.log.last_index
        self.voters: list[int] = []
        self.learners: list[int] = []
        self.match: dict[int, int] = {}
        self.next_index: dict[int, int] = {}
        self.last_ack: dict[int, float] = {}
        self.unflushed: list[tuple] = []  # leader: appended, not yet durable here
        self.caught_up = False
        self.leader_commit_seen = 0
        self.now = 0.0
        self.led_since = 0.0
        self.progress_at = 0.0  # leader: last recovery progress (promises collected, entries fetched)
        self.stuck = False
        self.refused_term = 0  # a term the table names us leader at that we must not lead
        # recovery
        self.phase = ""  # "", "prepare", "fetch", "barrier"
        self.round = 0
        self.round_deadline = 0.0
        self.promises: dict[int, dict] = {}
        self.fetch_from = 0
        self.fetch_upto = 0
        self.barrier = 0
        self.rounds_failed = 0
        self._ready = Ready()

    # ------------------------------------------------------------------ plumbing
    @property
    def term(self) -> int:
        return self.hard.term

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def last_term(self) -> int:
        return self.log.last_term

    def take_ready(self) -> Ready:
        rd, self._ready = self._ready, Ready()
        return rd

    def _set_hard(self, term: int | None = None, led: int | None = None) -> None:
        new = HardState(self.hard.term if term is None else max(self.hard.term, term),
                        self.hard.led if led is None else max(self.hard.led, led))
        if new != self.hard:
            self.hard = new
            self._ready.hard = new

    def _status(self) -> None:
        self._ready.status = True

    # ------------------------------------------------------------------ roles
    def set_config(self, voters: list[int], learners: list[int]) -> None:
        self.voters = list(voters)
        self.learners = list(learners)
        if self.role == LEADER:
            for n in self.voters + self.learners:
                if n != self.node_id:
                    self.next_index.setdefault(n, self.log.last_index + 1)
                    self.match.setdefault(n, 0)
                    self.last_ack.setdefault(n, self.now)
            if self.phase == "barrier" or self.ready:
                self._advance_commit()

    def become_follower(self, term: int, leader: int) -> None:
        if self.role == LEADER:
            self.step_down(f"node {leader} leads at term {term}")
            self.caught_up = True  # it held everything it committed
        self._set_hard(term=term)
        if self.role != FOLLOWER or self.leader_id != leader:
            self._status()
        self.role = FOLLOWER
        self.leader_id = leader

    def become_none(self) -> None:
        if self.role == LEADER:
            self.step_down("no longer a replica")
        self.role = NONE
        self.leader_id = 0

    def become_leader(self, term: int) -> bool:
        """Lead at ``term`` (the table says so); False when that term may not be led here."""
        if self.role == LEADER and self.term == term:
            return True
        if term < self.term or term <= self.hard.led:
            # a newer term was promised, or we led this term before and left it: entries we
            # sent then may not be durable here, and new ones would reuse their (index, term)
            if self.refused_term != term:
                self.refused_term = term
                self._status()
            self.role = FOLLOWER
            self.leader_id = 0
            return False
        if self.role == LEADER:
            self.step_down(f"leading term {term}")  # entries of the old term not durable here go
        self._set_hard(term=term, led=term)  # durable before any prepare or append leaves
        self.role = LEADER
        self.leader_id = self.node_id
        self.ready = False
        self.stuck = False
        self.refused_term = 0
        self.led_since = self.progress_at = self.now
        self.match = {}
        self.next_index = {}
        self.last_ack = {}
        self.rounds_failed = 0
        self.set_config(self.voters, self.learners)
        self._status()
        self._start_round()
        return True

    def step_down(self, why: str = "") -> None:
        if self.role != LEADER:
            return
        self.ready = False
        self.role = FOLLOWER
        self.phase = ""
        self.stuck = False
        if self.unflushed:
            # proposed but not durable here: never acknowledged, drop them
            self.unflushed = []
            self.log.truncate_after(self.durable_index)
        self._status()

    def reload(self, last_index: int, last_term: int, commit_before: int | None = None) -> None:
        """A log write failed: believe the durable log again, which ends at (last_index, last_term).

        The memory tail may hold entries the failed write did not make durable, at
        indices where the disk still has others: it is dropped whole. The commit index
        goes back to what it was before the failed step (``commit_before``) and never
        beyond the durable log, so the leader's next appends can repair the log; what
        was handed to the applier stays handed (it was committed, with that content).
        A leader (recovering: the failed write held adopted entries) steps down.
        """
        if self.role == LEADER:
            # what this leadership sent may rest on entries that are not durable here: it
            # must not go on at this term (a new term comes from the controller)
            self.step_down("log write failed")
        self.log.tail.clear()
        self.log.last_index, self.log.last_term = last_index, last_term
        self.durable_index = last_index
        self.unflushed = []
        limit = self.commit_index if commit_before is None else min(self.commit_index, commit_before)
        self.commit_index = min(limit, last_index)

    def is_serving(self) -> bool:
        """Leader, ready, fenced by a live session, and its state machine has applied the barrier
        (so what the shell derives from the applied state, like the next message seq, is current)."""
        return self.role == LEADER and self.ready and self.applied_done >= self.barrier and self.session_alive()

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> None:
        self.now = now
        if self.role != LEADER:
            return
        if self.phase in ("prepare", "fetch") and now >= self.round_deadline:
            self.rounds_failed += 1
            self._start_round()
        stuck = (not self.ready and now - self.progress_at > STUCK_AFTER) or not self._has_quorum_contact()
        if stuck != self.stuck:
            self.stuck = stuck
            self._status()

    def _has_quorum_contact(self) -> bool:
        voters = self.voters or [self.node_id]
        heard = sum(1 for v in voters if v == self.node_id or self.now - self.last_ack.get(v, -1e18) <= STUCK_AFTER)
        return heard >= len(voters) // 2 + 1

    # ------------------------------------------------------------------ leader: recovery
    def _start_round(self) -> None:
        self.round += 1
        self.phase = "prepare"
        self.round_deadline = self.now + RECOVERY_TIMEOUT
        self.promises = {}
        if self.node_id in self.voters or not self.voters:
            self.promises[self.node_id] = {"ok": True, "last_index": self.log.last_index,
                                           "last_term": self.log.last_term, "commit": self.commit_index}
        for v in self.voters:
            if v != self.node_id:
                self._ready.send.append((v, wire.REPL_PREPARE, wire.Prepare(self.slot, self.term, self.node_id)))
        self._maybe_decide()

    def recovery_failed(self) -> None:
        """The shell could not carry out a recovery step (store error...): try again next round."""
        if self.role == LEADER and self.phase in ("prepare", "fetch"):
            self.round_deadline = self.now

    def on_prepare_reply(self, peer: int, term: int, reply: dict | None) -> None:
        if self.role != LEADER or term != self.term or self.phase != "prepare" or reply is None:
            return
        if reply.get("ok"):
            self.promises[peer] = reply
            self._maybe_decide()
        elif reply.get("term", 0) > self.term:
            self._set_hard(term=reply["term"])
            self.step_down("a newer term exists")

    def _maybe_decide(self) -> None:
        voters = self.voters or [self.node_id]
        if self.node_id not in voters or len(self.promises) < len(voters) // 2 + 1:
            return
        best_node, best = max(self.promises.items(), key=lambda kv: (kv[1]["last_term"], kv[1]["last_index"]))
        self.progress_at = self.now
        if (best["last_term"], best["last_index"]) > (self.log.last_term, self.log.last_index):
            self.phase = "fetch"
            self.fetch_from = best_node
            self.fetch_upto = best["last_index"]
            self.round_deadline = self.now + FETCH_TIMEOUT
            self._send_fetch(self.commit_index + 1)
        else:
            self._append_barrier()

    def _send_fetch(self, first: int) -> None:
        last = min(self.fetch_upto, first + FETCH_BATCH - 1)
        self._ready.send.append((self.fetch_from, wire.REPL_FETCH, wire.Fetch(self.slot, self.term, first, last)))

    def on_fetch_reply(self, peer: int, term: int, entries: list | None) -> None:
        if self.role != LEADER or term != self.term or self.phase != "fetch" or peer != self.fetch_from:
            return
        if not entries:
            self.recovery_failed()
            return
        entries = [tuple(e) for e in entries]
        try:
            self._merge(entries)
        except LogConflict:
            self.recovery_failed()
            return
        self.durable_index = self.log.last_index
        self.progress_at = self.now
        if self.log.last_index >= self.fetch_upto:
            self._append_barrier()
        else:
            self.round_deadline = self.now + FETCH_TIMEOUT
            self._send_fetch(entries[-1][0] + 1)

    def _append_barrier(self) -> None:
        self.phase = "barrier"
        self.barrier = self._append_local([(KIND_NOOP, None)])
        self._advance_commit()

    # ------------------------------------------------------------------ leader: proposing
    def _append_local(self, items: list[tuple[int, Any]]) -> int:
        entries = []
        idx = self.log.last_index
        for kind, data in items:
            idx += 1
            entries.append((idx, self.term, kind, data))
        self.log.append(entries)
        self.unflushed.extend(entries)
        return idx

    def propose(self, items: list[tuple[int, Any]]) -> int:
        """Append entries of the current term; returns the last index (raises NotLeader)."""
        if not self.is_serving():
            raise NotLeader(f"slot {self.slot} is not served here")
        return self._append_local(items)

    def take_unflushed(self) -> list[tuple]:
        """The leader's entries to make durable locally (the shell calls ``persisted`` after)."""
        batch, self.unflushed = self.unflushed, []
        return batch

    def persisted(self, idx: int) -> None:
        """Entries up to ``idx`` are durable here."""
        if idx > self.durable_index and idx <= self.log.last_index:
            self.durable_index = idx
            self._advance_commit()

    # ------------------------------------------------------------------ leader: replication
    def append_request(self, peer: int, heartbeat: bool = False) -> wire.Append | None:
        """The next append for ``peer`` (None when it has everything and no heartbeat is due)."""
        if self.role != LEADER or self.phase not in ("barrier", ""):
            return None
        nxt = self.next_index.get(peer, self.log.last_index + 1)
        if nxt > self.log.last_index and not heartbeat:
            return None
        last = min(self.log.last_index, nxt + BATCH - 1)
        entries = self.log.entries(nxt, last) if nxt <= last else []
        prev = nxt - 1
        return wire.Append(self.slot, self.term, self.node_id, prev, self.log.term_at(prev),
                           [list(e) for e in entries], self.commit_index)

    def on_append_reply(self, peer: int, req: wire.Append, reply: dict | None) -> None:
        if self.role != LEADER or req.term != self.term or reply is None:
            return
        if reply.get("ok"):
            self.last_ack[peer] = self.now
            m = max(self.match.get(peer, 0), int(reply["match"]))
            self.match[peer] = m
            self.next_index[peer] = max(self.next_index.get(peer, 0), m + 1)
            self._advance_commit()
        elif reply.get("term", 0) > self.term:
            self._set_hard(term=reply["term"])
            self.step_down("a newer term exists")
        else:
            self.last_ack[peer] = self.now
            nxt = req.prev_idx + 1
            hint = int(reply.get("last_index", nxt - 1))
            if hint < self.match.get(peer, 0):
                # it no longer holds what it acknowledged (its data was restored from an older
                # backup, or lost): go on from what it has (the commit index never goes back)
                self.match[peer] = max(0, hint)
            self.next_index[peer] = max(1, min(nxt - 1, hint + 1), self.match.get(peer, 0) + 1)

    def _advance_commit(self) -> None:
        if self.role != LEADER or self.phase not in ("barrier", ""):
            return
        voters = self.voters or [self.node_id]
        positions = sorted((self.durable_index if v == self.node_id else self.match.get(v, 0) for v in voters),
                           reverse=True)
        n = positions[len(voters) // 2]
        if n > self.commit_index and self.log.term_at(n) == self.term:
            if not self.session_alive():
                return  # fenced: no etcd session, no acknowledgements
            self.commit_index = n
            self._hand_out()
        if self.phase == "barrier" and self.commit_index >= self.barrier:
            self.phase = ""
            self.ready = True
            self.stuck = not self._has_quorum_contact()
            self._ready.became_ready = True
            self._status()

    # ------------------------------------------------------------------ applying
    def _hand_out(self) -> None:
        """Committed entries not handed out yet go to the applier: each once, in order."""
        if self.commit_index > self.applied:
            got = self.log.entries(self.applied + 1, self.commit_index)
            if got and got[0][0] == self.applied + 1:
                self._ready.apply.extend(got)
                self.applied = got[-1][0]

    def applied_to(self, idx: int) -> None:
        """The applier has applied entries up to ``idx``."""
        self.applied_done = max(self.applied_done, idx)

    # ------------------------------------------------------------------ follower side
    def on_prepare(self, p: wire.Prepare) -> dict:
        if p.term < self.term:
            return {"ok": False, "term": self.term}
        if p.term > self.term and self.role == LEADER:
            self.step_down(f"node {p.leader} prepares term {p.term}")
        self._set_hard(term=p.term)  # the promise: persisted before this answer leaves
        if p.leader != self.node_id:
            self.role = FOLLOWER
            self.leader_id = p.leader
        return {"ok": True, "last_index": self.log.last_index, "last_term": self.log.last_term,
                "commit": self.commit_index}

    def on_append(self, p: wire.Append) -> dict:
        if p.term < self.term:
            return {"ok": False, "term": self.term, "last_index": self.log.last_index}
        if p.term > self.term or self.role == LEADER:
            if self.role == LEADER:
                self.step_down(f"node {p.leader} appends at term {p.term}")
            self._set_hard(term=p.term)
        self.role = FOLLOWER
        self.leader_id = p.leader
        if p.prev_idx > self.log.last_index:
            return {"ok": False, "term": self.term, "last_index": self.log.last_index}
        if p.prev_idx > self.commit_index and self.log.term_at(p.prev_idx) != p.prev_term:
            return {"ok": False, "term": self.term, "last_index": max(self.commit_index, p.prev_idx - BATCH)}
        if p.entries:
            try:
                self._merge([tuple(e) for e in p.entries])
            except LogConflict as exc:
                return {"ok": False, "term": self.term, "last_index": self.commit_index, "error": str(exc)}
        self.durable_index = self.log.last_index
        match = p.prev_idx + len(p.entries)
        self.leader_commit_seen = p.commit
        new_commit = min(p.commit, match)
        if new_commit > self.commit_index:
            self.commit_index = new_commit
            self._hand_out()
        was = self.caught_up
        self.caught_up = self.log.last_index >= p.commit and self.commit_index >= p.commit
        if self.caught_up != was:
            self._status()
        return {"ok": True, "term": self.term, "match": match, "last_index": self.log.last_index}

    def _merge(self, entries: list[tuple]) -> None:
        cut, new = self.log.merge_plan(entries, self.commit_index)
        if cut is not None:
            self._ready.truncated += self.log.truncate_after(cut)
            self.durable_index = min(self.durable_index, cut)
            self._ready.cut = cut if self._ready.cut is None else min(self._ready.cut, cut)
            # an earlier, not yet persisted part of this ready past the cut is void
            self._ready.persist = [e for e in self._ready.persist if e[0] <= cut]
        if new:
            self.log.append(new)
            self._ready.persist.extend(new)

    def on_fetch(self, p: wire.Fetch) -> list:
        return [list(e) for e in self.log.entries(p.first, min(p.last, self.log.last_index))]

    # ------------------------------------------------------------------ introspection
    def in_sync(self) -> frozenset[int]:
        """Members close enough to the commit index to take over leadership or be promoted."""
        if self.role != LEADER:
            return frozenset()
        members = set(self.voters + self.learners)
        floor = self.commit_index - IN_SYNC_SLACK
        return frozenset({self.node_id} | {n for n in members if self.match.get(n, 0) >= max(1, floor)
                                           or self.commit_index == 0})
