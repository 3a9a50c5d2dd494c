"""The slot leader's side of keyed calls: ``slot.call`` requests land here.

A call is served only while this node leads the slot (the slot table names it and its
etcd session is alive); otherwise it is refused with ``not_leader`` and the caller's
router retries against the new leader. Methods are registered by the modules that
own them (users, channels, messages) as ``fn(state, args) -> result``; writes go
through ``propose(slot, op, args)`` so that the state changes the same way on every
replica.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mesh.slot_state import SlotState
from mesh.transport import Refused

log = logging.getLogger("mesh.slot_service")

Handler = Callable[["SlotService", int, Any], Any]


class SlotService:
    def __init__(self, node) -> None:
        self.node = node
        self.node_id = node.node_id
        self.states: dict[int, SlotState] = {}
        self.methods: dict[str, Handler] = {}
        node.mesh.handle("slot.call", self._on_call)

    def register(self, method: str, fn: Handler) -> None:
        self.methods[method] = fn

    def leads(self, slot: int) -> bool:
        table = self.node.view.table
        m = self.node.membership
        return (table is not None and slot < len(table.slots) and table.slots[slot].leader == self.node_id
                and m is not None and m.session_alive)

    def state(self, slot: int) -> SlotState:
        st = self.states.get(slot)
        if st is None:
            st = self.states[slot] = SlotState(slot)
        return st

    def propose(self, slot: int, op: str, args: dict) -> Any:
        """Apply a state change to the slot (on the leader, in order)."""
        return self.state(slot).apply(op, args)

    def _on_call(self, sender: int, payload: Any) -> Any:
        slot, method, args = payload
        if not self.leads(slot):
            table = self.node.view.table
            raise Refused("not_leader", table.slots[slot].leader if table and slot < len(table.slots) else 0)
        fn = self.methods.get(method)
        if fn is None:
            raise Refused("no_method", method)
        return fn(self, slot, args)
