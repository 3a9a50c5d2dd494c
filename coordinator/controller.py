"""The controller role: one node at a time, elected through etcd, owns the slot table.

Election: every node whose etcd session is alive tries to create the ``controller``
key under its own lease whenever the key is absent; etcd lets exactly one succeed.
When the controller dies its lease expires, the key vanishes and the others race
again, so a new controller exists within the lease TTL. ``transfer(target)`` hands
the key over atomically (the key is rewritten under the target's lease).

While controller, the node recomputes the slot table (``slot_table.plan``) after
every change it sees (members, drains, removals, slot leaders' reports) and writes it
with a transaction that succeeds only if it still holds the controller key and the
table is the one it read, so a deposed controller can never overwrite a newer table.

With no table in etcd it asks the live nodes what slot data they hold: none means a
new cluster; otherwise the table was lost and is rebuilt from those reports
(``coordinator.table_rebuild``), or not written at all while they cannot vouch for
every slot's data.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent

from coordinator.cluster_view import ClusterView
from coordinator.etcd_client import Etcd
from coordinator.membership import Membership
from coordinator.slot_table import SlotTable, check_invariants, move_leader, plan, stuck_slots
from coordinator.table_rebuild import NodeReport, has_data, rebuild
from mesh.base import metrics
from mesh.base.wake_loop import WakeLoop

log = logging.getLogger("coordinator.controller")

BOOTSTRAP_SETTLE = 1.0  # seconds without membership changes before the first table is written
RESIGN_ABSTAIN = 3.0  # seconds a controller that resigned leaves the election to the others

PositionsFn = Callable[[SlotTable, set[int]], dict[int, dict[int, tuple[int, int]]]]
HoldingsFn = Callable[[set[int]], dict[int, NodeReport]]


class Controller:
    def __init__(self, etcd: Etcd, view: ClusterView, membership: Membership, node_id: int, *,
                 slot_count: int, replica_count: int, positions: PositionsFn | None = None,
                 max_copies: int = 8, reachable: Callable[[int], bool] | None = None,
                 holdings: HoldingsFn | None = None) -> None:
        self.etcd = etcd
        self.view = view
        self.membership = membership
        self.node_id = node_id
        self.slot_count = slot_count
        self.replica_count = replica_count
        self.positions = positions
        self.max_copies = max_copies
        self.reachable = reachable or (lambda _n: True)
        self.holdings = holdings  # asks live nodes what slot data they hold (a lost table is rebuilt from it)
        self._rebuild_refused: list[str] | None = None
        self.key = etcd.key("controller")
        self.slots_key = etcd.key("slots")
        self._was_controller = False
        self._members_seen: frozenset[int] = frozenset()
        self._stuck_seen: dict[int, tuple[int, int, float]] = {}  # slot -> (term, leader, not ready since)
        self._recheck: gevent.Greenlet | None = None
        self._members_changed_at = time.monotonic()
        self._abstain_until = 0.0  # after resign(): campaign only if nobody else took the role
        self._loop = WakeLoop("controller pass", self._pass, interval=2.0, settle=0.05, logger=log)
        view.listen(self._loop.wake)
        membership.on_session_change(self._loop.wake)

    @property
    def is_controller(self) -> bool:
        return self.view.controller == self.node_id and self.membership.session_alive

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _pass(self) -> None:
        if self.view.controller is None and self.membership.session_alive:
            self._campaign()
        now = self.is_controller
        metrics.is_controller.set(1 if now else 0)
        if now != self._was_controller:
            log.info("controller role %s", "taken" if now else "lost")
            self._was_controller = now
        if now:
            self._reconcile()

    def _campaign(self) -> None:
        lease = self.membership.lease
        if lease is None:
            return
        wait = self._abstain_until - time.monotonic()
        if wait > 0 and len(self.view.live()) > 1:
            gevent.spawn_later(wait + 0.05, self._loop.wake)
            return
        if self.etcd.create(self.key, str(self.node_id), lease=lease):
            log.info("elected controller")

    def transfer(self, target: int) -> bool:
        """Move the controller role to ``target`` (must be a live member). True if done."""
        if not self.is_controller:
            return False
        lease_id = self.etcd.lease_id_of(self.etcd.key("members", target))
        if not lease_id:
            return False
        ok, _ = self.etcd.txn([self.etcd.tx.value(self.key) == str(self.node_id)],
                              [self.etcd.tx.put(self.key, str(target), lease_id)])
        if ok:
            log.info("controller role transferred to node %s", target)
        return ok

    def resign(self) -> bool:
        """Give the controller role up so that another node wins the next election. True if done.

        The key is deleted only if this node still holds it; this node then stays out of
        the election for ``RESIGN_ABSTAIN`` seconds (unless it is the only live node).
        """
        if not self.is_controller:
            return False
        self._abstain_until = time.monotonic() + RESIGN_ABSTAIN
        ok, _ = self.etcd.txn([self.etcd.tx.value(self.key) == str(self.node_id)], [self.etcd.tx.delete(self.key)])
        if ok:
            log.info("controller role resigned (operator election); leaving the election to the others for %.0fs",
                     RESIGN_ABSTAIN)
        else:
            self._abstain_until = 0.0
        return ok

    def move_slot_leader(self, slot: int, away_from: int) -> dict:
        """An operator's slot election: move ``slot``'s leadership off ``away_from`` (a table write, term + 1).

        Returns ``{"moved": bool, "leader", "term", "reason"}``; refused unless controller.
        """
        if not self.is_controller:
            return {"moved": False, "reason": "not the controller"}
        view = self.view
        current = view.table
        if current is None:
            return {"moved": False, "reason": "no slot table yet"}
        new, reason = move_leader(current, slot, away_from, {n for n in view.live() if self.reachable(n)},
                                  status=view.status, draining=view.draining, removed=view.removed,
                                  no_lead=view.stepdown)
        if new is None:
            return {"moved": False, "reason": reason}
        ok, _ = self.etcd.txn([self.etcd.tx.value(self.key) == str(self.node_id),
                               self.etcd.tx.value(self.slots_key) == view.table_raw],
                              [self.etcd.tx.put(self.slots_key, new.to_bytes())])
        if not ok:
            self.view.refresh()
            return {"moved": False, "reason": "the slot table changed meanwhile; retry"}
        s = new.slots[slot]
        swapped = [b.id for a, b in zip(current.slots, new.slots) if b.id != slot and a.leader != b.leader]
        metrics.controller_changes.inc()
        log.info("slot table v%d written: slot %d moved from node %d to node %d at term %d (operator election)%s",
                 new.version, slot, away_from, s.leader, s.term,
                 f"; slot(s) {swapped} to node {away_from} to keep the counts even" if swapped else "")
        return {"moved": True, "leader": s.leader, "term": s.term, "swapped": swapped, "reason": ""}

    def _reconcile(self) -> None:
        view = self.view
        # A registered node this one has never heard over the mesh (wrong CURVE keys, blocked
        # ports) gets no slot: it could never copy data or vote.
        live = {n for n in view.live() if self.reachable(n)}
        unheard = view.live() - live
        if unheard:
            if unheard != getattr(self, "_unheard_logged", None):
                log.warning("registered node(s) %s not reachable over the mesh; leaving them out of the slot table",
                            sorted(unheard))
                self._unheard_logged = unheard
            gevent.spawn_later(1.0, self._loop.wake)
        if not live:
            return
        if frozenset(live) != self._members_seen:
            self._members_seen = frozenset(live)
            self._members_changed_at = time.monotonic()
        current = view.table
        fresh = current is None
        rebuilt = None
        if fresh:
            # A new cluster: give nodes started together a moment to register, so the
            # first table spreads over all of them instead of moving replicas right away.
            quiet = time.monotonic() - self._members_changed_at
            if quiet < BOOTSTRAP_SETTLE or (unheard and quiet < BOOTSTRAP_SETTLE * 5):
                gevent.spawn_later(0.2, self._loop.wake)
                return
            rebuilt = self._rebuild_if_lost(live)
            if rebuilt is False:
                gevent.spawn_later(1.0, self._loop.wake)
                return
            current = SlotTable.empty(self.slot_count, self.replica_count)
        elif current.slot_count != self.slot_count:
            log.error("slot table has %d slots but cluster.slotCount is %d; keeping the table",
                      current.slot_count, self.slot_count)
        positions = None
        stuck = set() if fresh else stuck_slots(current, view.status, self._stuck_seen, time.monotonic(), live)
        if stuck:
            log.warning("slot(s) %s: leader not serving for too long; moving them", sorted(stuck)[:8])
        if self._stuck_seen and (self._recheck is None or self._recheck.dead):
            # a not-ready leader may become stuck without any etcd change: look again
            self._recheck = gevent.spawn_later(1.0, self._loop.wake)
        if self.positions is not None and not fresh:
            needing = {s.id for s in current.slots if s.leader not in live} | stuck
            if needing:
                positions = self.positions(current, needing)
        new = rebuilt if rebuilt is not None else \
            plan(current, live, draining=view.draining, removed=view.removed, no_lead=view.stepdown,
                 status=view.status,
                 positions=positions, fresh=fresh, max_copies=self.max_copies, stuck=stuck)
        if new.version == current.version and not fresh:
            return
        problems = [p for p in check_invariants(new, live) if "no leader" not in p]
        if problems:
            log.error("planned slot table violates invariants, not writing: %s", problems[:5])
            return
        ctl = self.etcd.tx.value(self.key) == str(self.node_id)
        if fresh:
            cond = [ctl, self.etcd.tx.create(self.slots_key) == 0]
        else:
            cond = [ctl, self.etcd.tx.value(self.slots_key) == view.table_raw]
        ok, _ = self.etcd.txn(cond, [self.etcd.tx.put(self.slots_key, new.to_bytes())])
        if ok:
            metrics.controller_changes.inc()
            moved = sum(1 for a, b in zip(current.slots, new.slots) if a.leader != b.leader)
            changed = sum(1 for a, b in zip(current.slots, new.slots) if a.to_json() != b.to_json())
            leaderless = sum(1 for s in new.slots if not s.leader)
            log.info("slot table v%d written: %d slot(s) changed, %d leader move(s), live=%s%s",
                     new.version, changed, moved, sorted(live),
                     f", {leaderless} slot(s) without a live voter" if leaderless else "")
        else:
            # Our copy of the table (or of the controller key) is not etcd's: read it again
            # now and plan once more, rather than waiting for the watch or the next resync.
            log.info("slot table write lost a race; re-reading")
            self.view.refresh()
            self._loop.wake()

    def _rebuild_if_lost(self, live: set[int]) -> SlotTable | None | bool:
        """No table in etcd: None if the cluster is new, a rebuilt table if the nodes hold data, False to wait."""
        if self.holdings is None:
            return None
        reports = self.holdings(live)
        if set(reports) != live:
            log.warning("no slot table in etcd; waiting for node(s) %s to report their slot data",
                        sorted(live - set(reports)))
            return False
        if not has_data(reports):
            return None
        table, problems = rebuild(reports, self.slot_count, self.replica_count)
        if table is None:
            if problems != self._rebuild_refused:
                log.error("slot table missing from etcd while nodes hold slot data; not rebuilding it yet: %s "
                          "(waiting for more nodes, or restore etcd)", "; ".join(problems))
                self._rebuild_refused = problems
            return False
        self._rebuild_refused = None
        log.warning("slot table missing from etcd while nodes hold slot data: rebuilding it from the reports of "
                    "node(s) %s (version %d, terms up to %d)", sorted(reports), table.version,
                    max(s.term for s in table.slots))
        return table
