"""System accounts: the uids added by ``/user/systemuids_add``, stored and cached on every node.

The stored set lives in the replicated state of the slot of the key ``____system``
(WuKongIM uses slot 0; any fixed slot does). Every node keeps a copy (``current``,
always with the built-in ``____system``) that the send check reads on the channel's
slot leader. The copy is kept in step by a mesh broadcast (``sysuid.changed``,
sequenced with replay) sent by the node that made the change, carrying the log index
of the change so an older broadcast never overwrites a newer copy; a node loads the
set when it starts and re-reads it every ``REFRESH`` seconds as a safety net.
"""
from __future__ import annotations

import logging

import gevent

from mesh.im.channel_rules import SYSTEM_UID
from mesh.net import wire

log = logging.getLogger("mesh.im.system_uids")

REFRESH = 30.0


def register(service) -> None:
    service.register(wire.SYSUID_ADD, lambda svc, slot, a: svc.propose(slot, wire.OP_SYSUID, {"add": a}))
    service.register(wire.SYSUID_REMOVE, lambda svc, slot, a: svc.propose(slot, wire.OP_SYSUID, {"remove": a}))
    service.register(wire.SYSUID_LIST, lambda svc, slot, _a: [svc.state(slot).applied,
                                                             sorted(svc.state(slot).system_uids)])


class SystemUids:
    def __init__(self, node) -> None:
        self.node = node
        self.current: frozenset[str] = frozenset({SYSTEM_UID})
        self.version = -1  # log index of the change the copy reflects
        self._greenlet: gevent.Greenlet | None = None
        node.mesh.subscribe(wire.SYSUID_CHANGED, lambda _s, p: self.apply(p[0], p[1]))

    def apply(self, version: int, uids: list[str]) -> bool:
        if version < self.version:
            return False
        self.version = version
        self.current = frozenset(uids) | {SYSTEM_UID}
        return True

    def stored(self) -> list[str]:
        """The stored uids (from the slot leader), without the built-in one."""
        version, uids = self.node.router.call(SYSTEM_UID, wire.SYSUID_LIST, None)
        self.apply(version, uids)
        return uids

    def change(self, add: list[str], remove: list[str]) -> None:
        """Store the change, then bring every node's copy in step (this one first)."""
        if add:
            got = self.node.router.call(SYSTEM_UID, wire.SYSUID_ADD, list(add))
        else:
            got = self.node.router.call(SYSTEM_UID, wire.SYSUID_REMOVE, list(remove))
        self.apply(got[0], got[1])
        self.node.mesh.publish_remote(wire.SYSUID_CHANGED, [got[0], got[1]])
        log.info("system uids changed: +%d -%d, now %d stored", len(add), len(remove), len(got[1]))

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _loop(self) -> None:
        delay = 0.5
        while True:
            try:
                self.stored()
                delay = REFRESH
            except Exception as exc:
                log.debug("system uids not loaded yet: %s", exc)
                delay = min(delay * 2, 5.0) if delay < REFRESH else 1.0
            gevent.sleep(delay)
