"""The slot leader's side of keyed calls: ``slot.call`` requests land here.

A call is served only by the slot's serving leader (named by the table at the current
term, etcd session alive, recovery done); otherwise it is refused with ``not_leader``
or ``not_ready`` and the caller's router retries. Methods are registered by the
modules that own them (users, channels, conversations, messages) as
``fn(service, slot, args) -> result``. Writes go through ``propose(slot, op, args)``:
the operation is replicated and applied on every replica of the slot, and the call
returns only after a majority has it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mesh.im.slot_state import SlotState
from mesh.net import wire
from mesh.net.transport import Refused
from mesh.replication.replica import NotLeader, SlotReplica

log = logging.getLogger("mesh.slots.service")

Handler = Callable[["SlotService", int, Any], Any]


class SlotService:
    def __init__(self, node) -> None:
        self.node = node
        self.node_id = node.node_id
        self.methods: dict[str, Handler] = {}
        node.mesh.handle(wire.SLOT_CALL, self._on_call)

    def register(self, method: str, fn: Handler) -> None:
        self.methods[method] = fn

    def replica(self, slot: int) -> SlotReplica:
        """This node's serving replica of ``slot`` (raises Refused for the caller to retry)."""
        r = self.node.replication.replicas.get(slot)
        if r is None or not r.is_serving():
            table = self.node.view.table
            leader = table.slots[slot].leader if table and slot < len(table.slots) else 0
            if leader == self.node_id and r is not None:
                raise Refused("not_ready", leader)
            raise Refused("not_leader", leader)
        return r

    def state(self, slot: int) -> SlotState:
        return self.replica(slot).state

    def propose(self, slot: int, op: str, args: dict) -> Any:
        try:
            return self.replica(slot).propose_op(op, args)
        except NotLeader as exc:
            raise Refused("not_leader", str(exc)) from None

    def _on_call(self, sender: int, payload: Any) -> Any:
        call = wire.SlotCall(*payload)
        fn = self.methods.get(call.method)
        if fn is None:
            raise Refused("no_method", call.method)
        try:
            return fn(self, call.slot, call.args)
        except NotLeader as exc:
            raise Refused("not_leader", str(exc)) from None
