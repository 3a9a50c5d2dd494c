"""All slot replicas of this node: roles from the slot table, node-to-node handlers, reports.

Follows the slot table: for every slot this node is a member of it keeps a
``SlotReplica`` (loaded from the store) and makes it leader (when the table names
this node at the current term and the etcd session is alive), follower or learner;
replicas of slots it no longer belongs to are dropped after a grace period. It
answers the replication requests of other nodes (``repl.append``, ``repl.prepare``,
``repl.fetch``, ``repl.positions``, ``repl.status``), publishes each led slot's
report to etcd (``slotstate/<slot>``: term, ready, in-sync members) for the
controller, compacts committed entries into the archive tables and takes snapshots.
``/health`` is not ready while a replica is still catching up with its leader.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import gevent

from coordinator.slot_table import SlotTable
from coordinator.table_rebuild import Holding, NodeReport
from mesh.base import metrics
from mesh.base.wake_loop import WakeLoop
from mesh.net import wire
from mesh.net.transport import MeshError, Refused
from mesh.replication.append_pipe import PeerSenders, serve_many
from mesh.replication.replica import FOLLOWER, LEADER, NONE, SlotReplica
from mesh.storage.log_store import LogStore
from mesh.storage.store import Store

log = logging.getLogger("mesh.replication.manager")

DROP_GRACE = 30.0  # seconds a slot must stay outside our membership before its data is dropped
COMPACT_EVERY = 30.0
TICK = 0.25  # seconds between the leaders' core ticks


class Replication:
    def __init__(self, node) -> None:
        self.node = node
        self.node_id = node.node_id
        cfg = node.cfg
        self.store: LogStore = Store(cfg["rootDir"], threads=cfg["store.threads"], memory_limit=cfg["store.memoryLimit"],
                           commit_interval=cfg["store.commitInterval"], commit_max=cfg["store.commitMaxEntries"],
                           inline_sync_max=cfg["store.inlineSyncMax"],
                           flush_interval=cfg["store.flushInterval"], fsync=cfg["store.fsync"])
        self.replicas: dict[int, SlotReplica] = {}
        self.apply_hook = None
        self.ready_hook = None
        self._published: dict[int, dict] = {}
        self._published_lease = None  # the lease the reports in _published were written under
        self._not_member_since: dict[int, float] = {}
        self._snapshotting: set[int] = set()
        self._dropping: set[int] = set()
        self._compacted: dict[int, int] = {}
        self._status_loop = WakeLoop("slot status report", self._publish_status, interval=2.0, settle=0.05,
                                     logger=log)
        self._roles_loop = WakeLoop("slot roles", self._apply_table, interval=1.0, logger=log)
        self._greenlets: list[gevent.Greenlet] = []
        self.truncated = 0
        m = node.mesh
        self._senders = PeerSenders(m.request)
        m.handle(wire.REPL_APPEND, self._on_append)
        m.handle(wire.REPL_APPEND_MANY, lambda sender, reqs: serve_many(self._on_append, sender, reqs))
        m.handle(wire.REPL_PREPARE, self._on_prepare)
        m.handle(wire.REPL_FETCH, self._on_fetch)
        m.handle(wire.REPL_POSITIONS, self._on_positions)
        m.handle(wire.REPL_HOLDINGS, self._on_holdings)
        m.handle(wire.REPL_STATUS, self._on_status)
        m.handle(wire.REPL_SYNC_FORCE, self._on_sync_force)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.store.open()
        if getattr(self.store, "restored", False):
            self._fence_restored_terms()
        for slot in sorted(self.store.local_slots()):
            self._replica(slot)

    def _fence_restored_terms(self) -> None:
        """After a restore from a snapshot: promise every slot's current table term, and never lead at it.

        The restored hard state is older than what this node promised and led before: it
        must not accept a deposed leader below the table's term, nor lead again at a term
        it may have led after the snapshot (its entries of that term are gone here).
        """
        table = self.node.view.table
        if table is None:
            return
        for slot in sorted(self.store.local_slots()):
            if slot >= len(table.slots):
                continue
            s = table.slots[slot]
            term, led = self.store.load_hard_state(slot)
            new_led = max(led, s.term) if s.leader == self.node.node_id else led
            if (max(term, s.term), new_led) != (term, led):
                self.store.save_hard_state(slot, max(term, s.term), new_led)
        log.info("restored from a snapshot: hard state raised to the slot table's terms (v%d)", table.version)

    def start(self) -> None:
        self.node.view.listen(self._roles_loop.wake)
        self.node.membership.on_session_change(self._roles_loop.wake)
        self._roles_loop.start()
        self._status_loop.start()
        self._greenlets = [gevent.spawn(self._compact_loop), gevent.spawn(self._lag_loop),
                           gevent.spawn(self._tick_loop)]

    def stop(self) -> None:
        self._roles_loop.stop()
        self._status_loop.stop()
        gevent.killall(self._greenlets, block=False)
        for r in self.replicas.values():
            r.stop()
        self._senders.close()
        self.store.close()

    def request(self, peer: int, method: str, payload: Any, timeout: float) -> Any:
        return self.node.mesh.request(peer, method, payload, timeout=timeout)

    def lead(self, replica: SlotReplica, peers: set[int]) -> None:
        self._senders.lead(replica, peers)

    def unlead(self, replica: SlotReplica) -> None:
        self._senders.unlead(replica)

    def wake(self, replica: SlotReplica) -> None:
        self._senders.wake(replica)

    def session_alive(self) -> bool:
        m = self.node.membership
        return m is not None and m.session_alive

    # ------------------------------------------------------------------ roles
    def _replica(self, slot: int) -> SlotReplica:
        """The one replica object of ``slot`` (created and loaded once, even by concurrent callers)."""
        if slot in self._dropping:
            raise Refused("not_member", slot)
        r = self.replicas.get(slot)
        if r is None:
            r = SlotReplica(self, slot)
            r.apply_hook = self.apply_hook
            r.ready_hook = self.ready_hook
            self.replicas[slot] = r  # registered before load() yields, so nobody creates a second one
            try:
                r.load()
            except Exception:
                self.replicas.pop(slot, None)
                r.loaded.set()
                raise
            r.loaded.set()
        elif not r.loaded.is_set():
            r.loaded.wait()
            if self.replicas.get(slot) is not r:
                return self._replica(slot)
        return r

    def _apply_table(self) -> None:
        table = self.node.view.table
        if table is None:
            return
        alive = self.session_alive()
        now = time.monotonic()
        led = 0
        for s in table.slots:
            members = s.replicas + s.learners
            if self.node_id not in members:
                r = self.replicas.get(s.id)
                if r is not None:
                    if r.role != NONE:
                        r.become_none()
                    since = self._not_member_since.setdefault(s.id, now)
                    if now - since > DROP_GRACE:
                        self._drop(s.id)
                continue
            self._not_member_since.pop(s.id, None)
            if s.id in self._dropping:
                continue
            r = self._replica(s.id)
            r.set_config(s.replicas, s.learners)
            if s.leader == self.node_id and alive:
                r.become_leader(s.term)
                led += 1
            else:
                if r.role == LEADER and (s.leader != self.node_id or not alive):
                    r.step_down("etcd session lost" if not alive else f"node {s.leader} leads term {s.term}")
                r.become_follower(s.term, s.leader)
        metrics.slots_led.set(led)
        self._status_loop.wake()

    def _drop(self, slot: int) -> None:
        self._dropping.add(slot)  # no replica of this slot may be created until its data is gone
        try:
            r = self.replicas.pop(slot, None)
            self._not_member_since.pop(slot, None)
            if r is not None:
                r.stop()
            log.info("slot %d: no longer a replica here; dropping its data", slot)
            self.store.drop_slot(slot)
        except Exception:
            log.exception("dropping slot %d failed", slot)
        finally:
            self._dropping.discard(slot)
        self._published.pop(slot, None)

    def serving(self, slot: int) -> SlotReplica | None:
        r = self.replicas.get(slot)
        return r if r is not None and r.is_serving() else None

    # ------------------------------------------------------------------ reports
    def status_changed(self, replica: SlotReplica) -> None:
        self._status_loop.wake()

    def in_sync_maybe_changed(self, replica: SlotReplica) -> None:
        pub = self._published.get(replica.slot)
        if pub is None or sorted(replica.in_sync()) != pub.get("in_sync") or pub.get("ready") != replica.ready:
            self._status_loop.wake()

    def _publish_status(self) -> None:
        m = self.node.membership
        table = self.node.view.table
        if m is None or not m.session_alive or table is None:
            return
        etcd = self.node.etcd
        if m.lease is not self._published_lease:
            # a new lease (the session was lost and the node joined again): the reports written
            # under the old one went with it, so every one is written again
            self._published = {}
            self._published_lease = m.lease
        for r in list(self.replicas.values()):
            s = table.slots[r.slot] if r.slot < len(table.slots) else None
            if s is None or s.leader != self.node_id:
                continue
            if r.role == LEADER and s.term == r.term:
                want = {"term": r.term, "leader": self.node_id, "ready": r.ready, "in_sync": sorted(r.in_sync()),
                        "last_index": r.last_index, "stuck": r.stuck}
            elif r.core.refused_term == s.term:
                # named leader at a term it may not lead: ask the controller for a new one
                want = {"term": s.term, "leader": self.node_id, "ready": False, "in_sync": [],
                        "last_index": r.last_index, "stuck": True}
            else:
                continue
            pub = self._published.get(r.slot)
            if pub is not None and {k: pub.get(k) for k in ("term", "ready", "in_sync", "stuck")} == \
                    {k: want[k] for k in ("term", "ready", "in_sync", "stuck")}:
                continue
            etcd.put(etcd.key("slotstate", r.slot), json.dumps(want), lease=m.lease)
            self._published[r.slot] = want

    def health_reasons(self) -> list[str]:
        table = self.node.view.table
        if table is None:
            return []
        live = self.node.view.members
        behind = []
        for r in self.replicas.values():
            s = table.slots[r.slot]
            if self.node_id not in s.replicas + s.learners or not s.leader or s.leader not in live:
                continue
            if r.role == FOLLOWER and s.leader != self.node_id and not r.caught_up:
                behind.append(r.slot)
        if behind:
            return [f"catching up {len(behind)} slot(s): {behind[:8]}"]
        return []

    def count_truncated(self, n: int) -> None:
        self.truncated += n
        metrics.repl_truncated.inc(n)

    # ------------------------------------------------------------------ controller support
    def positions(self, table: SlotTable, slots: set[int]) -> dict[int, dict[int, tuple[int, int]]]:
        """(last term, last index) of every live voter of ``slots``, to pick new leaders."""
        out: dict[int, dict[int, tuple[int, int]]] = {s: {} for s in slots}
        nodes = {n for s in slots for n in table.slots[s].replicas if n in self.node.view.members}

        def ask(n: int) -> None:
            try:
                got = self.request(n, wire.REPL_POSITIONS, sorted(slots), timeout=1.0)
            except MeshError:
                return
            for slot, pos in got.items():
                out.setdefault(int(slot), {})[n] = (pos[0], pos[1])
        gevent.joinall([gevent.spawn(ask, n) for n in nodes], timeout=1.5)
        return out

    def holdings(self, nodes: set[int]) -> dict[int, NodeReport]:
        """What each of ``nodes`` holds (to rebuild a lost slot table); nodes that did not answer are absent."""
        out: dict[int, NodeReport] = {}

        def ask(n: int) -> None:
            try:
                got = self.request(n, wire.REPL_HOLDINGS, None, timeout=2.0)
            except MeshError as exc:
                log.warning("node %s did not report its slot holdings: %s", n, exc)
                return
            out[n] = NodeReport(int(got.get("version", 0)),
                                {int(s): Holding(int(h[0]), int(h[1]), int(h[2])) for s, h in got["slots"].items()})
        gevent.joinall([gevent.spawn(ask, n) for n in nodes], timeout=2.5)
        return out

    # ------------------------------------------------------------------ handlers
    def _on_holdings(self, sender: int, _p: Any) -> dict:
        slots = {s: [r.term, r.last_term, r.last_index] for s, r in list(self.replicas.items())
                 if r.loaded.is_set() and s not in self._dropping}
        return {"version": self.node.view.seen_version, "slots": slots}

    def _target(self, slot: int) -> SlotReplica:
        table = self.node.view.table
        if table is None or slot >= table.slot_count:
            raise Refused("no_slot", slot)
        return self._replica(slot)

    def _on_append(self, sender: int, p: list) -> dict:
        slot, term, leader, prev_idx, prev_term, entries, commit = p
        return self._target(slot).on_append(term, leader, prev_idx, prev_term, entries, commit)

    def _on_prepare(self, sender: int, p: list) -> dict:
        slot, term, leader = p
        return self._target(slot).on_prepare(term, leader)

    def _on_fetch(self, sender: int, p: list) -> list:
        slot, term, first, last = p
        r = self.replicas.get(slot)
        if r is None:
            return []
        return r.on_fetch(first, last)

    def _on_positions(self, sender: int, slots: list) -> dict:
        return {s: [self.replicas[s].last_term, self.replicas[s].last_index] for s in slots if s in self.replicas}

    def _on_status(self, sender: int, _p: Any) -> list:
        return [r.info() for r in self.replicas.values() if r.role == LEADER]

    def _on_sync_force(self, sender: int, _p: Any) -> int:
        n = 0
        for r in self.replicas.values():
            if r.role == LEADER:
                r.nudge()
                n += 1
        return n

    # ------------------------------------------------------------------ housekeeping
    def schedule_snapshot(self, r: SlotReplica) -> None:
        if r.slot in self._snapshotting:
            return
        self._snapshotting.add(r.slot)

        def run():
            try:
                r.snapshot()
            except Exception:
                log.exception("slot %d: snapshot failed", r.slot)
            finally:
                self._snapshotting.discard(r.slot)
        gevent.spawn(run)

    def _tick_loop(self) -> None:
        """Time for the leaders' cores: recovery rounds that stall restart, stuck leaders say so."""
        while True:
            gevent.sleep(TICK)
            for r in list(self.replicas.values()):
                if r.role == LEADER:
                    try:
                        r.tick()
                    except Exception:
                        log.exception("slot %d: tick failed", r.slot)

    def _lag_loop(self) -> None:
        """``skein_replication_lag_entries{slot,node}``: how far each replica of the slots led here trails."""
        shown: set[tuple[str, str]] = set()
        while True:
            gevent.sleep(2.0)
            now: set[tuple[str, str]] = set()
            for r in list(self.replicas.values()):
                if r.role != LEADER:
                    continue
                for m in r.voters + r.learners:
                    pos = r.durable_index if m == self.node_id else r.match.get(m, 0)
                    key = (str(r.slot), str(m))
                    metrics.repl_lag.labels(*key).set(max(0, r.commit_index - pos))
                    now.add(key)
            for key in shown - now:
                try:
                    metrics.repl_lag.remove(*key)
                except KeyError:
                    pass
            shown = now

    def _compact_loop(self) -> None:
        while True:
            gevent.sleep(COMPACT_EVERY)
            for r in list(self.replicas.values()):
                upto = min(r.commit_index, r.state.applied)
                if upto - self._compacted.get(r.slot, 0) < 1000:
                    continue
                try:
                    self.store.compact(r.slot, upto)
                    self._compacted[r.slot] = upto
                except Exception:
                    log.exception("slot %d: compaction failed", r.slot)

    def info(self) -> list[dict]:
        return [r.info() for r in self.replicas.values()]
