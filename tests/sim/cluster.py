"""A deterministic simulation of a few nodes running ``SlotCore`` for one slot.

Everything is driven by one seeded ``random.Random`` and a simulated clock: the
network (delay, drop, duplication, reordering, partitions), the etcd sessions, the
controller (the real ``coordinator.slot_table.plan`` and ``stuck_slots``, with nodes
seeing its table late), each node's storage (what was not persisted is lost on a
crash; fsync can fail) and the clients. Each node does what ``replica.py`` does
around the core: persist a ``Ready`` before sending, write the leader's entries with
a writer, send appends one at a time per peer with heartbeats, apply committed
entries in one applier whose hooks take time.

``run(seed)`` injects faults for ``FAULT_TIME`` simulated seconds, then heals
everything and checks, returning a ``Result``:

* ``acked_on_majority``: every entry a client was told is committed is durable, with
  the same content, on a majority of the voters at the end;
* ``committed_agreement``: no two replicas apply different content at an index;
* ``apply_once_in_order``: each replica applies each entry once, in index order
  (per incarnation: a restarted node applies again from its start);
* ``ready_leader``: once faults stop, the slot has a ready leader, named by the
  table, that commits a new entry, within ``SETTLE_BOUND`` simulated seconds.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from coordinator.slot_table import SlotInfo, SlotStatus, SlotTable, plan, stuck_slots
from mesh.net import wire
from mesh.replication.core import LEADER, HardState, NotLeader, SlotCore

NODES = (1, 2, 3)
SLOT = 0
LEASE = 3.0  # etcd session lease
KEEPALIVE = 1.0
HEARTBEAT = 0.3
APPEND_TIMEOUT = 1.0
CONTROLLER_EVERY = 0.5
FAULT_TIME = 12.0
SETTLE_BOUND = 20.0  # simulated seconds after the faults stop within which a ready leader must commit
KIND_NOOP, KIND_MSG = 0, 1
FAULTS = ("crash", "crash", "crash", "crash_leader_mid_write", "pause", "drop", "dup", "delay", "delay",
          "partition", "etcd", "controller", "stale_leader", "fsync",
          "stale")  # drawn uniformly: crashes and long delays are the likeliest


@dataclass
class Result:
    seed: int
    faults: int = 0
    violations: list[str] = field(default_factory=list)
    events: int = 0
    acked: int = 0
    trace: list[str] = field(default_factory=list)


class Storage:
    """A node's disk: the durable log and hard state survive a crash, nothing else does."""

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self.hard = HardState()
        self.fail_until = -1.0  # fsync fails until then

    def read_entries(self, first: int, last: int) -> list[tuple]:
        first = max(first, 1)
        return self.entries[first - 1:last]

    def last(self) -> tuple[int, int]:
        return (self.entries[-1][0], self.entries[-1][1]) if self.entries else (0, 0)


class FsyncError(Exception):
    pass


FAILED = object()  # what ``Sim.step`` returns when persisting failed


class Node:
    def __init__(self, sim: Sim, nid: int) -> None:
        self.sim = sim
        self.id = nid
        self.disk = Storage()
        self.up = True
        self.incarnation = 0
        self.paused_until = -1.0
        self.keepalive_ok_at = 0.0  # node's belief: last successful keepalive
        self.keepalive_failed = False
        self.etcd_seen_at = 0.0  # etcd's view: last keepalive that reached etcd
        self.view: SlotTable | None = None
        self.boot()

    def boot(self) -> None:
        self.incarnation += 1
        li, lt = self.disk.last()
        self.core = SlotCore(self.id, SLOT, self.disk, hard=self.disk.hard, last_index=li, last_term=lt,
                             session_alive=self.session_alive)
        self.core.now = self.sim.now
        self.inflight: dict[int, float] = {}
        self.writing = False
        self.crash_at_write = 0.0  # > 0: crash instead of the next local write, restart after that long
        self.apply_q: list[tuple] = []
        self.applying = False
        self.applied = 0
        self.waiters: dict[int, Any] = {}
        self.leading = 0
        self.hard_unsaved: HardState | None = None
        if self.view is not None:
            self.core.set_config(self.view.slots[SLOT].replicas, self.view.slots[SLOT].learners)

    # ------------------------------------------------------------------ environment
    def session_alive(self) -> bool:
        s = self.sim
        return self.up and not self.keepalive_failed and s.now - self.keepalive_ok_at < LEASE

    def running(self) -> bool:
        return self.up and self.sim.now >= self.paused_until


class Sim:
    def __init__(self, seed: int, *, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.q: list[tuple] = []
        self.seq = 0
        self.tracing = trace
        self.res = Result(seed)
        self.nodes = {n: Node(self, n) for n in NODES}
        self.table = SlotTable(version=1, slot_count=1, replica_count=3,
                               slots=[SlotInfo(SLOT, leader=1, replicas=list(NODES), term=1)])
        self.status: dict[int, SlotStatus] = {}
        self.stuck_seen: dict[int, tuple[int, int, float]] = {}
        # network faults
        self.drop = 0.0
        self.dup = 0.0
        self.delay_max = 0.005
        self.cut: set[frozenset[int]] = set()  # node pairs that cannot talk
        self.etcd_cut: set[int] = set()  # nodes cut from etcd
        self.view_delay = 0.05
        self.faults_on = True
        self.committed: dict[int, tuple] = {}  # index -> (term, kind, data) applied somewhere
        self.acked: dict[int, tuple] = {}  # index -> entry a client was answered for
        self.next_value = 0
        self.probe: tuple | None = None
        self.healthy_at: float | None = None

    # ------------------------------------------------------------------ scheduling
    def at(self, t: float, fn, *args) -> None:
        self.seq += 1
        heapq.heappush(self.q, (t, self.seq, fn, args))

    def trace(self, msg: str) -> None:
        if self.tracing:
            self.res.trace.append(f"{self.now:9.4f} {msg}")

    def violate(self, what: str) -> None:
        self.res.violations.append(f"t={self.now:.3f} {what}")
        self.trace(f"VIOLATION {what}")

    # ------------------------------------------------------------------ network
    def send(self, src: int, dst: int, fn, *args) -> None:
        """Deliver ``fn(*args)`` at ``dst`` later, unless the network loses it."""
        if frozenset((src, dst)) in self.cut or self.rng.random() < self.drop:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self.at(self.now + self.rng.uniform(0.0005, self.delay_max), self._deliver, dst,
                    self.nodes[dst].incarnation, fn, args)

    def _deliver(self, dst: int, inc: int, fn, args) -> None:
        node = self.nodes[dst]
        if node.running():
            fn(node, *args)

    # ------------------------------------------------------------------ a node's shell
    def step(self, node: Node, fn, *args) -> Any:
        """Run one core step on ``node``; persist, send, apply, as replica.py does."""
        core = node.core
        core.now = self.now
        commit_before = core.commit_index
        result = fn(*args)
        rd = core.take_ready()
        try:
            hard = rd.hard or node.hard_unsaved
            if hard:
                node.hard_unsaved = hard  # kept for a retry if this write fails
                self._fsync(node)
                node.disk.hard = hard
                node.hard_unsaved = None
            if rd.cut is not None or rd.persist:
                self._fsync(node)
                if rd.cut is not None:
                    del node.disk.entries[rd.cut:]
                if rd.persist:
                    self._disk_append(node, rd.persist)
        except FsyncError:
            self.trace(f"n{node.id} fsync failed; reloading the log position")
            core.recovery_failed()
            core.reload(*node.disk.last(), commit_before)
            if rd.apply:  # committed all the same: they still go to the applier
                node.apply_q.extend(rd.apply)
                self._start_applier(node)
            if node.leading and core.role != LEADER:
                node.leading = 0
                node.waiters = {}
            return FAILED  # nothing is sent or answered
        for peer, method, payload in rd.send:
            if method == wire.REPL_PREPARE:
                self.send(node.id, peer, self.on_prepare, node.id, node.incarnation, payload)
            else:
                self.send(node.id, peer, self.on_fetch, node.id, node.incarnation, payload)
        if rd.apply:
            node.apply_q.extend(rd.apply)
            self._start_applier(node)
        if node.leading and (core.role != LEADER or core.term != node.leading):
            node.leading = 0
            node.waiters = {}
        if rd.became_ready:
            self.trace(f"n{node.id} ready at term {core.term} (log {core.last_index}, commit {core.commit_index})")
        if rd.status and core.role == LEADER:
            self._report(node)
        self._after(node)
        return result

    def _fsync(self, node: Node) -> None:
        if self.now < node.disk.fail_until:
            raise FsyncError()

    def _disk_append(self, node: Node, entries: list[tuple]) -> None:
        d = node.disk.entries
        if entries[0][0] != len(d) + 1:
            self.violate(f"n{node.id} storage append of {entries[0][0]} after {len(d)}")
            return
        d.extend(entries)

    def _after(self, node: Node) -> None:
        core = node.core
        if core.role != LEADER:
            return
        if core.unflushed and not node.writing:
            node.writing = True
            self.at(self.now + self.rng.uniform(0.001, 0.03), self._write, node.id, node.incarnation)
        self._pump(node, False)

    def _pump(self, node: Node, heartbeat: bool) -> None:
        core = node.core
        for peer in core.voters + core.learners:
            if peer == node.id:
                continue
            if node.inflight.get(peer, -1.0) > self.now:
                continue
            req = core.append_request(peer, heartbeat)
            if req is None:
                continue
            node.inflight[peer] = self.now + APPEND_TIMEOUT
            self.send(node.id, peer, self.on_append, node.id, node.incarnation, req)

    def _write(self, nid: int, inc: int) -> None:
        node = self.nodes[nid]
        if node.incarnation != inc or not node.up:
            return
        if not node.running():
            self.at(node.paused_until, self._write, nid, inc)
            return
        node.writing = False
        if node.crash_at_write:
            # kill -9 after the entries went to the followers, before they were durable here
            self.trace(f"n{nid} crashes before writing {len(node.core.unflushed)} entries it sent")
            self.crash(nid, node.crash_at_write)
            return
        core = node.core
        batch = core.take_unflushed()
        if not batch or core.role != LEADER:
            return
        try:
            self._fsync(node)
        except FsyncError:
            self.trace(f"n{nid} leader write failed; stepping down")
            core.unflushed = batch + core.unflushed
            self.step(node, core.step_down, "local store failure")
            core.reload(*node.disk.last())
            return
        self._disk_append(node, batch)
        self.trace(f"n{nid} wrote {batch[0][0]}..{batch[-1][0]} t{batch[-1][1]}")
        self.step(node, core.persisted, batch[-1][0])

    # ------------------------------------------------------------------ applying
    def _start_applier(self, node: Node) -> None:
        if not node.applying and node.apply_q:
            node.applying = True
            self.at(self.now + self.rng.choice((0.0, 0.0, 0.001, 0.02)), self._apply_next, node.id,
                    node.incarnation)

    def _apply_next(self, nid: int, inc: int) -> None:
        node = self.nodes[nid]
        if node.incarnation != inc or not node.up:
            return
        node.applying = False
        if not node.apply_q:
            return
        e = node.apply_q.pop(0)
        idx = e[0]
        if idx != node.applied + 1:
            self.violate(f"apply_once_in_order: n{nid} applies {idx} after {node.applied}")
        node.applied = max(node.applied, idx)
        node.core.applied_to(idx)
        content = (e[1], e[2], e[3])
        prev = self.committed.setdefault(idx, content)
        if prev != content:
            self.violate(f"committed_agreement: n{nid} applies {content} at {idx}, another replica {prev}")
        want = node.waiters.pop(idx, None)
        if want is not None and node.core.role == LEADER:
            if want == e[3]:
                self.acked[idx] = e
                self.res.acked += 1
                if self.probe is not None and e[3] == self.probe and self.healthy_at is None:
                    self.healthy_at = self.now
        self._start_applier(node)

    # ------------------------------------------------------------------ messages
    def on_append(self, node: Node, leader: int, linc: int, req: wire.Append) -> None:
        reply = self.step(node, node.core.on_append, req)
        if reply is FAILED:
            return
        self.send(node.id, leader, self.reply_append, linc, node.id, req, reply)

    def reply_append(self, node: Node, linc: int, peer: int, req: wire.Append, reply: dict) -> None:
        if node.incarnation != linc:
            return
        if node.inflight.get(peer, 0) > self.now and req.term == node.core.term:
            node.inflight[peer] = -1.0
        self.step(node, node.core.on_append_reply, peer, req, reply)

    def on_prepare(self, node: Node, leader: int, linc: int, p: wire.Prepare) -> None:
        reply = self.step(node, node.core.on_prepare, p)
        if reply is FAILED:
            return
        self.send(node.id, leader, self.reply_prepare, linc, node.id, p.term, reply)

    def reply_prepare(self, node: Node, linc: int, peer: int, term: int, reply: dict) -> None:
        if node.incarnation == linc:
            self.step(node, node.core.on_prepare_reply, peer, term, reply)

    def on_fetch(self, node: Node, leader: int, linc: int, p: wire.Fetch) -> None:
        got = node.core.on_fetch(p)
        self.send(node.id, leader, self.reply_fetch, linc, node.id, p.term, got)

    def reply_fetch(self, node: Node, linc: int, peer: int, term: int, entries: list) -> None:
        if node.incarnation == linc:
            self.step(node, node.core.on_fetch_reply, peer, term, entries)

    # ------------------------------------------------------------------ periodic
    def heartbeat(self, nid: int) -> None:
        node = self.nodes[nid]
        self.at(self.now + HEARTBEAT, self.heartbeat, nid)
        if not node.running():
            return
        if node.core.role == LEADER and not node.session_alive():
            self.trace(f"n{nid} session lost; stepping down")
            self.step(node, node.core.step_down, "session lost")
            return
        if node.core.role == LEADER:
            self.step(node, node.core.tick, self.now)
            self._pump(node, True)

    def keepalive(self, nid: int) -> None:
        node = self.nodes[nid]
        self.at(self.now + KEEPALIVE, self.keepalive, nid)
        if not node.running():
            return
        if nid in self.etcd_cut:
            node.keepalive_failed = True
            return
        was = node.session_alive()
        if self.now - node.etcd_seen_at >= LEASE:
            self.trace(f"n{nid} new etcd session")
        node.etcd_seen_at = self.now
        node.keepalive_ok_at = self.now
        node.keepalive_failed = False
        if not was:
            self.apply_table(node)

    def controller(self) -> None:
        self.at(self.now + CONTROLLER_EVERY, self.controller)
        live = {n for n, node in self.nodes.items() if self.now - node.etcd_seen_at < LEASE}
        positions = {SLOT: {n: (self.nodes[n].core.last_term, self.nodes[n].core.last_index)
                            for n in live if self.nodes[n].running()}}
        stuck = stuck_slots(self.table, self.status, self.stuck_seen, self.now, live)
        new = plan(self.table, live, status=self.status, positions=positions, stuck=stuck)
        if new.version != self.table.version:
            self.set_table(new, "controller")

    def set_table(self, new: SlotTable, why: str, slow: int = 0, slow_for: float = 0.0) -> None:
        """Publish a table; each node sees it a little later (``slow`` much later)."""
        self.table = new
        s = new.slots[SLOT]
        self.trace(f"table v{new.version} ({why}): leader n{s.leader} term {s.term}")
        for n in NODES:
            late = self.view_delay if self.rng.random() < 0.8 else self.view_delay * 10
            delay = (slow_for or self.rng.uniform(0.5, 4.0)) if n == slow else self.rng.uniform(0.001, late)
            self.at(self.now + delay, self._see_table, n, new)

    def _see_table(self, nid: int, table: SlotTable) -> None:
        node = self.nodes[nid]
        if not node.running():
            self.at(max(self.now, node.paused_until) + 0.01, self._see_table, nid, table)
            return
        if node.view is not None and node.view.version >= table.version:
            return
        node.view = table
        self.apply_table(node)

    def apply_table(self, node: Node) -> None:
        """What ``Replication._apply_table`` does for the one slot."""
        if node.view is None or not node.up:
            return
        s = node.view.slots[SLOT]
        core = node.core
        self.step(node, core.set_config, s.replicas, s.learners)
        if s.leader == node.id and node.session_alive():
            if core.role == LEADER and core.term == s.term:
                return
            led = self.step(node, core.become_leader, s.term)
            if led is FAILED:
                return
            if led:
                node.leading = s.term
                node.waiters = {}
                self.trace(f"n{node.id} leads term {s.term} (log {core.last_index}@{core.last_term})")
            else:
                self.trace(f"n{node.id} refuses term {s.term} (hard {core.hard})")
                self._report(node, refused=True)
        else:
            if core.role == LEADER:
                self.step(node, core.step_down, "table")
            self.step(node, core.become_follower, s.term, s.leader)

    def _report(self, node: Node, refused: bool = False) -> None:
        """The leader's slotstate report, reaching the controller a little later."""
        core = node.core
        if refused:
            st = SlotStatus(term=core.refused_term, leader=node.id, ready=False, stuck=True)
        else:
            st = SlotStatus(term=core.term, leader=node.id, ready=core.ready, in_sync=core.in_sync(),
                            last_index=core.last_index, stuck=core.stuck)
        if self.now - node.etcd_seen_at < LEASE and node.id not in self.etcd_cut:
            self.at(self.now + self.rng.uniform(0.001, 0.1), self.status.__setitem__, SLOT, st)

    def reporter(self, nid: int) -> None:
        node = self.nodes[nid]
        self.at(self.now + 1.0, self.reporter, nid)
        if not node.running():
            return
        self.apply_table(node)  # the roles loop also runs on a timer
        if node.core.role == LEADER:
            self._report(node)
        elif node.view is not None and node.core.refused_term == node.view.slots[SLOT].term \
                and node.view.slots[SLOT].leader == nid:
            self._report(node, refused=True)

    # ------------------------------------------------------------------ clients
    def client(self) -> None:
        self.at(self.now + self.rng.uniform(0.01, 0.12), self.client)
        if self.probe is not None:
            return
        nid = self.rng.choice(NODES)
        self.propose(nid)

    def propose(self, nid: int) -> bool:
        node = self.nodes[nid]
        if not node.running():
            return False
        self.next_value += 1
        v = f"v{self.next_value}"
        try:
            idx = self.step(node, node.core.propose, [(KIND_MSG, v)])
        except NotLeader:
            return False
        if idx is not FAILED:
            node.waiters[idx] = v
        return True

    # ------------------------------------------------------------------ faults
    def fault(self) -> None:
        if not self.faults_on:
            return
        self.at(self.now + self.rng.expovariate(1.0 / 1.5), self.fault)
        self.res.faults += 1
        r = self.rng
        kind = r.choice(FAULTS)
        n = r.choice(NODES)
        dur = r.uniform(0.3, 4.0)
        self.trace(f"FAULT {kind} n{n} {dur:.2f}s")
        if kind == "crash":
            self.crash(n, dur)
        elif kind == "crash_leader_mid_write":
            ld = self.nodes.get(self.table.slots[SLOT].leader)
            if ld is not None:
                ld.crash_at_write = r.uniform(0.2, 2.0)  # back before its etcd lease expires
        elif kind == "pause":
            node = self.nodes[n]
            node.paused_until = max(node.paused_until, self.now + LEASE + r.uniform(0.5, 2.0))
        elif kind == "drop":
            self.drop = r.uniform(0.1, 0.6)
            self.at(self.now + dur, setattr, self, "drop", 0.0)
        elif kind == "dup":
            self.dup = r.uniform(0.1, 0.5)
            self.at(self.now + dur, setattr, self, "dup", 0.0)
        elif kind == "delay":
            self.delay_max = r.uniform(0.05, 3.0)
            self.at(self.now + dur, setattr, self, "delay_max", 0.005)
        elif kind == "partition":
            others = [m for m in NODES if m != n]
            pairs = {frozenset((n, m)) for m in (others if r.random() < 0.6 else [r.choice(others)])}
            self.cut |= pairs
            self.at(self.now + dur, self._heal_pairs, pairs)
        elif kind == "etcd":
            self.etcd_cut.add(n)
            self.at(self.now + dur, self.etcd_cut.discard, n)
        elif kind == "controller":
            # a new controller with a stale view: any live voter, lagging or not, leads at a new term
            t = self.table.copy()
            live = [m for m in NODES if self.now - self.nodes[m].etcd_seen_at < LEASE]
            if live:
                s = t.slots[SLOT]
                old = s.leader
                s.leader = r.choice(live)
                s.term += 1
                t.version += 1
                # the old leader keeps a stale view for a while: it still leads the old term
                self.set_table(t, "controller change", slow=old if r.random() < 0.7 else 0)
        elif kind == "stale_leader":
            # the controller moves the slot; the old leader sees it late, cannot hear the new
            # leader meanwhile, and the third replica is restarted in that window
            s0 = self.table.slots[SLOT]
            old = s0.leader
            live = [m for m in NODES if m != old and self.now - self.nodes[m].etcd_seen_at < LEASE]
            if old and live:
                t = self.table.copy()
                s = t.slots[SLOT]
                s.leader = r.choice(live)
                s.term += 1
                t.version += 1
                crash_at = r.uniform(0.2, 1.0)
                down = r.uniform(0.05, 0.5)
                stale_for = crash_at + down + r.uniform(0.5, 3.0)
                self.set_table(t, "controller moves the slot", slow=old, slow_for=stale_for)
                pair = {frozenset((old, s.leader))}
                self.cut |= pair
                self.at(self.now + stale_for, self._heal_pairs, pair)
                third = [m for m in NODES if m not in (old, s.leader)]
                if third:
                    # the old leader reaches the third replica again only once it has restarted
                    pair3 = {frozenset((old, third[0]))}
                    self.cut |= pair3
                    self.at(self.now + crash_at, self.crash, third[0], down)
                    self.at(self.now + crash_at + down, self._heal_pairs, pair3)
        elif kind == "fsync":
            self.nodes[n].disk.fail_until = self.now + r.uniform(0.05, 1.0)
        elif kind == "stale":
            self.view_delay = r.uniform(0.5, 3.0)
            self.at(self.now + dur, setattr, self, "view_delay", 0.05)

    def crash(self, nid: int, down_for: float) -> None:
        node = self.nodes[nid]
        if node.up:
            node.up = False
            node.incarnation += 1
            self.at(self.now + down_for, self.restart, nid)

    def _heal_pairs(self, pairs: set) -> None:
        self.cut -= pairs

    def restart(self, nid: int) -> None:
        node = self.nodes[nid]
        if node.up:
            return
        node.up = True
        node.paused_until = -1.0
        node.boot()
        self.trace(f"n{nid} restarted (log {node.core.last_index}@{node.core.last_term}, hard {node.core.hard})")
        self.apply_table(node)

    def heal(self) -> None:
        self.faults_on = False
        self.drop = self.dup = 0.0
        self.delay_max = 0.005
        self.cut = set()
        self.etcd_cut = set()
        self.view_delay = 0.05
        for n, node in self.nodes.items():
            node.disk.fail_until = -1.0
            node.crash_at_write = 0.0
            if not node.up:
                self.restart(n)
        self.trace("HEAL")
        self.at(self.now + 0.01, self.probe_loop)

    def probe_loop(self) -> None:
        """After healing: keep proposing one probe entry at the table's leader until it commits."""
        if self.healthy_at is not None:
            return
        self.at(self.now + 0.2, self.probe_loop)
        s = self.table.slots[SLOT]
        node = self.nodes.get(s.leader)
        if node is None or not node.running() or node.core.term != s.term:
            return
        if self.probe is not None and any(v == self.probe for v in node.waiters.values()):
            return
        self.next_value += 1
        self.probe = f"probe{self.next_value}"
        try:
            idx = self.step(node, node.core.propose, [(KIND_MSG, self.probe)])
        except NotLeader:
            return
        if idx is not FAILED:
            node.waiters[idx] = self.probe

    # ------------------------------------------------------------------ run
    def run(self) -> Result:
        for n, node in self.nodes.items():
            node.view = self.table
            node.keepalive_ok_at = node.etcd_seen_at = 0.0
            self.at(0.01 * n, self.heartbeat, n)
            self.at(0.1 * n, self.keepalive, n)
            self.at(0.2 * n, self.reporter, n)
            self.apply_table(node)
        self.at(0.05, self.controller)
        self.at(0.1, self.client)
        self.at(self.rng.uniform(0.2, 1.0), self.fault)
        self.at(FAULT_TIME, self.heal)
        end = FAULT_TIME + SETTLE_BOUND
        events = 0
        q = self.q
        while q and self.healthy_at is None:
            t, _, fn, args = heapq.heappop(q)
            if t > end:
                break
            self.now = t
            fn(*args)
            events += 1
        self.res.events = events
        self.check()
        return self.res

    def check(self) -> None:
        if self.healthy_at is None:
            s = self.table.slots[SLOT]
            ld = self.nodes.get(s.leader)
            info = f"leader n{s.leader} term {s.term}"
            if ld is not None:
                c = ld.core
                info += (f"; its role {c.role} term {c.term} ready {c.ready} phase {c.phase!r} "
                         f"stuck {c.stuck} hard {c.hard} log {c.last_index} commit {c.commit_index}")
            self.violate(f"ready_leader: no ready leader committed within {SETTLE_BOUND:.0f}s after the faults "
                         f"stopped ({info})")
        voters = self.table.slots[SLOT].replicas
        need = len(voters) // 2 + 1
        for idx, e in sorted(self.acked.items()):
            have = sum(1 for v in voters if len(self.nodes[v].disk.entries) >= idx
                       and self.nodes[v].disk.entries[idx - 1] == e)
            if have < need:
                self.violate(f"acked_on_majority: acknowledged entry {e[:2]} {e[3]!r} is durable on {have} of "
                             f"{len(voters)} voters")
                break


def run(seed: int, trace: bool = False) -> Result:
    return Sim(seed, trace=trace).run()
