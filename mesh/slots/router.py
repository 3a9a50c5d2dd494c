"""Routing a keyed call to the leader of the key's slot, from any node.

``call(key, method, args)`` finds the slot (``crc32(key) % slotCount``) and its leader
in the slot table and sends ``slot.call`` over the mesh (a direct call when this node
leads the slot). A refusal because leadership moved, an unreachable leader or a slot
without a leader is retried until the deadline, following the table as the
controller updates it; then ``SlotUnavailable`` (the caller answers "retry required":
SENDACK 15, HTTP 503). Calls must therefore be idempotent.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import gevent

from coordinator.slot_table import slot_of
from mesh.net import wire
from mesh.net.transport import MeshError, RemoteError

log = logging.getLogger("mesh.router")


class SlotUnavailable(Exception):
    """The slot has no reachable leader right now; the caller should retry."""


class SlotCallError(Exception):
    """The slot leader refused the call for a reason that a retry will not fix."""

    def __init__(self, code: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


RETRYABLE = {"not_leader", "not_ready", "no_quorum", "fenced"}


class SlotRouter:
    def __init__(self, node) -> None:
        self.node = node

    @property
    def slot_count(self) -> int:
        table = self.node.view.table
        return table.slot_count if table else self.node.cfg["cluster.slotCount"]

    def slot_of(self, key: str) -> int:
        return slot_of(key, self.slot_count)

    def leader_of(self, slot: int) -> int:
        table = self.node.view.table
        if table is None or slot >= len(table.slots):
            return 0
        leader = table.slots[slot].leader
        return leader if leader in self.node.view.members else 0

    def call(self, key: str, method: str, args: Any = None, timeout: float | None = None) -> Any:
        return self.call_slot(self.slot_of(key), method, args, timeout)

    def call_slot(self, slot: int, method: str, args: Any = None, timeout: float | None = None) -> Any:
        timeout = self.node.cfg["cluster.requestTimeout"] if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = 0.02
        last = "no leader"
        while True:
            leader = self.leader_of(slot)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SlotUnavailable(f"slot {slot}: {last}")
            if leader:
                try:
                    return self.node.mesh.request(leader, wire.SLOT_CALL, wire.SlotCall(slot, method, args),
                                                  timeout=min(remaining, timeout))
                except RemoteError as exc:
                    if exc.code not in RETRYABLE:
                        raise SlotCallError(exc.code, exc.detail) from None
                    last = f"{exc.code} at node {leader}"
                except MeshError as exc:
                    last = f"leader {leader} unreachable ({exc})"
            gevent.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)
