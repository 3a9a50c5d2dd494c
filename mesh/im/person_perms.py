"""A node-wide cache of users' person-channel flags (ban, send_ban, deny and allow lists).

The send check of a message needs the sender's ``send_ban``/``ban`` and, for a person
chat, the receiver's lists; they live in other slots (the uid's). The leader of the
message's slot reads them through this cache: misses are fetched from the uid slots'
leaders in one request per leader. An API call that changes a person channel
invalidates the entry on every node (``invalidate_everywhere``) before it returns, so a
change is in force for the next message; an epoch counter stops a fetch that raced an
invalidation from refilling stale data, and entries also expire after a TTL as a
safety net.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict

import gevent

from mesh.im.channel_rules import PERSON, PersonFlags
from mesh.net import wire
from mesh.net.transport import MeshError

log = logging.getLogger("mesh.im.person_perms")

TTL = 60.0


def register(service) -> None:
    service.register(wire.PERM_PERSON, _read)


def _read(svc, slot: int, uids: list[str]) -> dict:
    state = svc.state(slot)
    out = {}
    for uid in uids:
        c = state.channel(uid, PERSON)
        if c is None:
            out[uid] = [0, 0, [], []]
        else:
            out[uid] = [c.flag("ban"), c.flag("send_ban"), sorted(c.deny), sorted(c.allow)]
    return out


class PersonPerms:
    def __init__(self, node) -> None:
        self.node = node
        self.cache: dict[str, tuple[float, PersonFlags]] = {}
        self.epoch: dict[str, int] = defaultdict(int)
        node.mesh.handle(wire.PERM_INVALIDATE, lambda _s, uids: self.invalidate_local(uids))

    def get_many(self, uids: set[str]) -> dict[str, PersonFlags]:
        now = time.monotonic()
        out: dict[str, PersonFlags] = {}
        missing: list[str] = []
        for uid in uids:
            hit = self.cache.get(uid)
            if hit is not None and now - hit[0] < TTL:
                out[uid] = hit[1]
            else:
                missing.append(uid)
        if missing:
            out.update(self._fetch(missing))
        return out

    def _fetch(self, uids: list[str]) -> dict[str, PersonFlags]:
        router = self.node.router
        by_slot: dict[int, list[str]] = defaultdict(list)
        for uid in uids:
            by_slot[router.slot_of(uid)].append(uid)
        epochs = {uid: self.epoch[uid] for uid in uids}
        got: dict[str, PersonFlags] = {}

        def one(slot: int, group: list[str]) -> None:
            res = router.call_slot(slot, wire.PERM_PERSON, group)
            for uid, (ban, send_ban, deny, allow) in res.items():
                got[uid] = PersonFlags(ban, send_ban, frozenset(deny), frozenset(allow))
        jobs = [gevent.spawn(one, slot, group) for slot, group in by_slot.items()]
        gevent.joinall(jobs, raise_error=True)
        now = time.monotonic()
        for uid, flags in got.items():
            if self.epoch[uid] == epochs[uid]:
                self.cache[uid] = (now, flags)
        return got

    def invalidate_local(self, uids: list[str]) -> int:
        for uid in uids:
            self.cache.pop(uid, None)
            self.epoch[uid] += 1
        return len(uids)

    def invalidate_everywhere(self, uids: list[str]) -> None:
        """Drop ``uids`` from this cache on every live node, waiting (briefly) for all of them."""
        self.invalidate_local(uids)
        peers = [n for n in self.node.view.members if n != self.node.node_id]

        def one(n: int) -> None:
            try:
                self.node.mesh.request(n, wire.PERM_INVALIDATE, list(uids), timeout=1.0)
            except MeshError as exc:
                log.warning("could not invalidate person flags on node %s: %s (its cache expires in %.0fs)",
                            n, exc, TTL)
        gevent.joinall([gevent.spawn(one, n) for n in peers], timeout=1.5)
