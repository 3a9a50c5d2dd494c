"""This node's picture of the cluster, read from etcd: members, controller, slot table.

Everything lives under ``/skein/<cluster>/``:

=====================  ==========================================================
``members/<id>``       a live node (JSON: addresses, instance, start time), under its lease
``controller``         the controller's node id, under the controller's lease
``slots``              the slot table (JSON, see ``coordinator.slot_table``)
``slotstate/<slot>``   the slot leader's report (term, ready, in-sync members), under its lease
``draining/<id>``      a node handing its slots over before leaving, under its lease
``stepdown/<id>``      a node about to restart: it keeps its replicas but leads nothing
``removed/<id>``       a node an operator removed; cleared when that id registers again
=====================  ==========================================================

One ``PrefixCache`` watches the whole prefix; ``ClusterView`` parses it and tells its
listeners after every change.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable

from coordinator.etcd_client import Etcd, PrefixCache
from coordinator.slot_table import SlotStatus, SlotTable

log = logging.getLogger("coordinator.view")


class ClusterView:
    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd
        self.members: dict[int, dict] = {}
        self.controller: int | None = None
        self.table: SlotTable | None = None
        self.table_raw: bytes | None = None
        self.seen_version = 0  # highest slot-table version ever seen (kept if the table vanishes)
        self.status: dict[int, SlotStatus] = {}
        self.draining: set[int] = set()
        self.removed: set[int] = set()
        self.stepdown: set[int] = set()
        self._listeners: list[Callable[[ClusterView], None]] = []
        self.cache = PrefixCache(etcd, etcd.prefix, self._on_items, name="cluster")

    def listen(self, fn: Callable[[ClusterView], None]) -> None:
        self._listeners.append(fn)

    def start(self) -> None:
        self.cache.start()

    def stop(self) -> None:
        self.cache.stop()

    def refresh(self) -> None:
        """Read etcd again now (never older than what the view already holds)."""
        self.cache.refresh()

    @property
    def watch_healthy(self) -> bool:
        return self.cache.healthy

    def wait_loaded(self, timeout: float) -> bool:
        return self.cache.loaded.wait(timeout)

    def _on_items(self, items: dict[str, bytes]) -> None:
        p = self.etcd.prefix
        members: dict[int, dict] = {}
        status: dict[int, SlotStatus] = {}
        draining: set[int] = set()
        removed: set[int] = set()
        stepdown: set[int] = set()
        controller = None
        table_raw = None
        for key, value in items.items():
            rel = key[len(p):]
            try:
                if rel.startswith("members/"):
                    members[int(rel.split("/", 1)[1])] = json.loads(value)
                elif rel == "controller":
                    controller = int(value)
                elif rel == "slots":
                    table_raw = value
                elif rel.startswith("slotstate/"):
                    status[int(rel.split("/", 1)[1])] = SlotStatus.from_json(json.loads(value))
                elif rel.startswith("draining/"):
                    draining.add(int(rel.split("/", 1)[1]))
                elif rel.startswith("removed/"):
                    removed.add(int(rel.split("/", 1)[1]))
                elif rel.startswith("stepdown/"):
                    stepdown.add(int(rel.split("/", 1)[1]))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed etcd key %s", key)
        self.members = members
        self.controller = controller
        self.status = status
        self.draining = draining
        self.removed = removed
        self.stepdown = stepdown
        if table_raw != self.table_raw:
            self.table_raw = table_raw
            try:
                self.table = SlotTable.from_bytes(table_raw) if table_raw else None
                if self.table is not None:
                    self.seen_version = max(self.seen_version, self.table.version)
            except (ValueError, KeyError):
                log.error("slot table in etcd is malformed; ignoring it")
        for fn in list(self._listeners):
            try:
                fn(self)
            except Exception:
                log.exception("cluster view listener failed")

    def live(self) -> set[int]:
        return set(self.members)

    def unserved_slots(self) -> list[int]:
        """Slots that a live voter could serve but that have no ready leader at the table's term.

        A slot is served once its leader (named by the table, alive) has reported the
        table's term ready (``slotstate/<slot>``: recovery done, barrier committed).
        Slots without any live voter are left out: no node can serve them.
        """
        table = self.table
        if table is None:
            return []
        out = []
        for s in table.slots:
            if not any(v in self.members for v in s.replicas):
                continue
            st = self.status.get(s.id)
            if not (s.leader in self.members and st is not None and st.ready and st.term == s.term
                    and st.leader == s.leader):
                out.append(s.id)
        return out
