"""Channels: info flags, subscribers, deny and allow lists, and their side effects.

A channel's metadata lives in its slot (``crc32(channel id)``) and changes through the
slot leader as replicated operations, so the change is in force on every node the
moment the call returns (permission checks read the leader's state). Side effects
follow WuKongIM v2.2.5: new subscribers get a conversation read up to the channel's
last message; removed subscribers lose it (except live channels); users added to a
deny list lose their conversation, users taken off it get one; allow-listing a user
on a person channel opens a conversation with the owner. A change to a user's own
person channel ``(uid, 1)`` is pushed out of every node's person-flags cache before
the call returns.
"""
from __future__ import annotations

import logging

from mesh.im.channel_rules import LIVE, PERSON, fake_channel_id
from mesh.net import wire

log = logging.getLogger("mesh.im.channels")


def register(service) -> None:
    service.register(wire.CH_INFO, lambda svc, slot, a: svc.propose(slot, wire.OP_CHANNEL_INFO, a))
    service.register(wire.CH_SUBSCRIBERS, _subscribers)
    service.register(wire.CH_LIST, lambda svc, slot, a: svc.propose(slot, wire.OP_CHANNEL_LIST, a))
    service.register(wire.CH_GET, _get)


def _subscribers(svc, slot: int, a: dict) -> dict:
    added = svc.propose(slot, wire.OP_CHANNEL_SUBSCRIBERS, a)
    return {"added": added, "last_seq": svc.state(slot).last_seq(a["id"], int(a["type"]))}


def _get(svc, slot: int, a: dict) -> dict | None:
    ch = svc.state(slot).channel(a["id"], int(a["type"]))
    if ch is None:
        return None
    return {"exists": ch.exists, "info": dict(ch.info), "subscribers": sorted(ch.subscribers),
            "deny": sorted(ch.deny), "allow": sorted(ch.allow), "last_seq": ch.last_seq}


class Channels:
    def __init__(self, node) -> None:
        self.node = node
        self.router = node.router

    def get(self, cid: str, ctype: int) -> dict | None:
        return self.router.call(cid, wire.CH_GET, {"id": cid, "type": ctype})

    def exists(self, cid: str, ctype: int) -> bool:
        if ctype == PERSON:
            return True
        got = self.get(cid, ctype)
        return bool(got and (got["exists"] or got["last_seq"] > 0))

    def person_block_reason(self, uid: str) -> int:
        """19 if the user's person channel is banned, 24 if disbanded, else 0."""
        got = self.get(uid, PERSON)
        if not got:
            return 0
        if got["info"].get("ban"):
            return 19
        if got["info"].get("disband"):
            return 24
        return 0

    def _person_changed(self, cid: str, ctype: int) -> None:
        if ctype == PERSON:
            self.node.person_perms.invalidate_everywhere([cid])

    def set_info(self, cid: str, ctype: int, info: dict) -> None:
        self.router.call(cid, wire.CH_INFO, {"id": cid, "type": ctype, "info": info})
        self._person_changed(cid, ctype)

    def add_subscribers(self, cid: str, ctype: int, uids: list[str], reset: bool = False) -> list[str]:
        res = self.router.call(cid, wire.CH_SUBSCRIBERS, {"id": cid, "type": ctype, "add": uids, "reset": bool(reset)})
        if ctype != LIVE and uids:
            self.node.conversations.ensure_many(list(dict.fromkeys(uids)), cid, ctype, res["last_seq"],
                                                overwrite_read=True)
        return res["added"]

    def remove_subscribers(self, cid: str, ctype: int, uids: list[str]) -> None:
        self.router.call(cid, wire.CH_SUBSCRIBERS, {"id": cid, "type": ctype, "remove": uids})
        if ctype != LIVE and uids:
            self.node.conversations.remove_many(uids, cid, ctype)

    def remove_all_subscribers(self, cid: str, ctype: int) -> None:
        self.router.call(cid, wire.CH_SUBSCRIBERS, {"id": cid, "type": ctype, "remove_all": True})

    def list_change(self, cid: str, ctype: int, which: str, mode: str, uids: list[str]) -> None:
        self.router.call(cid, wire.CH_LIST, {"id": cid, "type": ctype, "list": which, "mode": mode, "uids": uids})
        self._person_changed(cid, ctype)
        conv = self.node.conversations
        if which == "deny" and mode in ("add", "set") and uids and ctype != PERSON:
            conv.remove_many(uids, cid, ctype)
        elif which == "deny" and mode == "remove" and uids and ctype != PERSON:
            conv.ensure_many(uids, cid, ctype, 0, overwrite_read=False)
        elif which == "allow" and mode == "add" and ctype == PERSON:
            for uid in uids:
                if uid != cid:
                    conv.ensure_many([uid], fake_channel_id(uid, cid), PERSON, 0, overwrite_read=False)
