"""This node's roles in the slot table, and what it reports about them to the controller.

For every slot this node leads at the table's current term it publishes
``slotstate/<slot>`` (under its lease): whether the slot is ready at that term and
which members are in sync. The controller moves voters and leaders only on such
reports (see ``coordinator.slot_table``). ``hand_over()`` asks the controller to move
this node's leaderships away (``stepdown/<id>``) and waits until it has.

Until slots hold data, a leader is ready as soon as it is named and every member is in
sync; the replicated store replaces these reports with real ones.
"""
from __future__ import annotations

import json
import logging
import time

import gevent

from coordinator.slot_table import SlotStatus, SlotTable
from mesh.wake_loop import WakeLoop

log = logging.getLogger("mesh.slots")


class SlotRoles:
    def __init__(self, node) -> None:
        self.node = node
        self.etcd = node.etcd
        self.view = node.view
        self.node_id = node.node_id
        self._published: dict[int, dict] = {}
        self._loop = WakeLoop("slot report", self._report, interval=5.0, logger=log)

    def start(self) -> None:
        self.view.listen(self._loop.wake)
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _report(self) -> None:
        table = self.view.table
        m = self.node.membership
        if table is None or m is None or not m.session_alive:
            return
        for s in table.slots:
            if s.leader != self.node_id:
                continue
            st = SlotStatus(s.term, s.leader, True, frozenset(s.members()))
            want = st.to_json()
            have = self.view.status.get(s.id)
            if have is not None and have.to_json() == want and self._published.get(s.id) == want:
                continue
            self.etcd.put(self.etcd.key("slotstate", s.id), json.dumps(want), lease=m.lease)
            self._published[s.id] = want

    def positions(self, table: SlotTable, slots: set[int]) -> dict[int, dict[int, tuple[int, int]]]:
        return {}

    def hand_over(self, deadline: float) -> None:
        """Ask the controller to move this node's leaderships away, and wait for it."""
        m = self.node.membership
        self.etcd.put(self.etcd.key("stepdown", self.node_id), "1", lease=m.lease)
        while time.time() < deadline:
            table = self.view.table
            if table is None or not table.slots_led_by(self.node_id) or len(self.view.members) < 2:
                break
            gevent.sleep(0.1)
        left = len(self.view.table.slots_led_by(self.node_id)) if self.view.table else 0
        log.info("hand-over done: %d slot(s) still led here", left)
