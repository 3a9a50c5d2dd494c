"""Conversations: each user's list of chats with read and deleted positions, and their sync.

A user's conversation rows live in the user's slot (``crc32(uid)``). They are created
as WuKongIM v2.2.5 creates them: for both people of a person chat with its first
message (the sender has read it), for subscribers added to a group (read up to the
channel's last message), and by ``clearUnread``/``setUnread``; group messages never
create rows. ``/conversation/sync`` reads the rows, then asks each channel's slot
leader for its newest messages, and computes unread counts at that moment
(``build_sync``, pure).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict

import gevent

from mesh.im.channel_rules import PERSON, SYSTEM_UID, person_peer
from mesh.im.messages import message_resp
from mesh.net import wire
from mesh.storage.entries import M_CMN, M_FROM, M_SEQ, M_TS

log = logging.getLogger("mesh.im.conversations")

MAX_CONVERSATIONS = 1000


def register(service) -> None:
    service.register(wire.CONV_ENSURE, lambda svc, slot, a: svc.propose(slot, wire.OP_CONV_ENSURE, a))
    service.register(wire.CONV_REMOVE, lambda svc, slot, a: svc.propose(slot, wire.OP_CONV_REMOVE, a))
    service.register(wire.CONV_SET, lambda svc, slot, a: svc.propose(slot, wire.OP_CONV_SET, a))
    service.register(wire.CONV_LIST, _list)


def _list(svc, slot: int, a: dict) -> list:
    convs = svc.state(slot).convs.get(a["uid"], {})
    return [[cid, ctype, c.read_seq, c.deleted_seq, c.created_at, c.updated_at] for (cid, ctype), c in convs.items()]


def parse_last_msg_seqs(text: str) -> dict[tuple[str, int], int]:
    """``"chid:type:seq|chid:type:seq"`` -> {(chid, type): seq}; malformed parts are skipped."""
    out: dict[tuple[str, int], int] = {}
    for part in (text or "").split("|"):
        bits = part.split(":")
        if len(bits) != 3:
            continue
        try:
            out[(bits[0], int(bits[1]))] = int(bits[2])
        except ValueError:
            continue
    return out


def build_sync(uid: str, rows: list, summaries: dict, *, msg_count: int, last_msg_seqs: dict, only_unread: bool,
               exclude_types: set[int], page: int, page_size: int) -> list[dict]:
    """The ``/conversation/sync`` answer from conversation rows and channel summaries (pure).

    ``rows``: [stored channel id, type, read seq, deleted seq, created, updated];
    ``summaries[(stored id, type)]``: (last seq, recents newest first, the last seq
    ``uid`` sent there) with recents already limited to seq >= the base position
    chosen for that row.
    """
    out = []
    for sid, ctype, read_seq, _deleted, _created, _updated in rows:
        cid = person_peer(sid, uid) if ctype == PERSON else sid
        if ctype == PERSON and cid == SYSTEM_UID:
            continue
        key = (cid, ctype)
        if ctype in exclude_types and key not in last_msg_seqs:
            continue
        summary = summaries.get((sid, ctype))
        if not summary:
            continue
        _last_seq, recents, user_last = summary
        if not recents:
            continue
        newest = recents[0]
        newest_seq = newest[M_SEQ]
        unread = newest_seq - read_seq if newest_seq > read_seq else 0
        readed = read_seq
        if user_last > readed and newest_seq - user_last < unread:
            unread = newest_seq - user_last  # the user has read up to their own last message
            readed = user_last
        if newest[M_FROM] == uid:
            readed = newest_seq
            unread = 0
        if only_unread and unread == 0 and key not in last_msg_seqs:
            continue
        out.append({
            "channel_id": cid, "channel_type": ctype, "unread": unread, "timestamp": newest[M_TS],
            "last_msg_seq": newest_seq, "last_client_msg_no": newest[M_CMN], "offset_msg_seq": 0,
            "readed_to_msg_seq": readed, "version": newest[M_TS] * 1_000_000_000,
            "recents": [message_resp(m) for m in recents],
        })
    out.sort(key=lambda c: (c["timestamp"], c["last_msg_seq"]), reverse=True)
    if page > 0:
        out = out[(page - 1) * page_size: page * page_size]
    return out


class Conversations:
    def __init__(self, node) -> None:
        self.node = node
        self.router = node.router

    def _last_seq(self, sid: str, ctype: int) -> int:
        return self.router.call(sid, wire.MSG_MAX_SEQ, {"id": sid, "type": ctype})["seq"]

    def clear_unread(self, uid: str, sid: str, ctype: int) -> None:
        last = self._last_seq(sid, ctype)
        if last > 0:
            self.router.call(uid, wire.CONV_SET, {"uid": uid, "id": sid, "type": ctype, "read_seq": last,
                                               "raise_only": True, "now": int(time.time())})

    def set_unread(self, uid: str, sid: str, ctype: int, unread: int) -> None:
        last = self._last_seq(sid, ctype)
        if last <= 0:
            return
        if unread <= 0:
            target = last
        elif unread > last:
            target = last - 1
        else:
            target = last - unread
        self.router.call(uid, wire.CONV_SET, {"uid": uid, "id": sid, "type": ctype, "read_seq": target,
                                           "raise_only": True, "now": int(time.time())})

    def delete(self, uid: str, sid: str, ctype: int) -> None:
        last = self._last_seq(sid, ctype)
        self.router.call(uid, wire.CONV_SET, {"uid": uid, "id": sid, "type": ctype, "deleted_seq": last,
                                           "if_exists": True, "now": int(time.time())})

    def ensure_many(self, uids: list[str], sid: str, ctype: int, read_seq: int, *, overwrite_read: bool) -> None:
        """Create (or, with ``overwrite_read``, reset the read position of) the rows of ``uids``."""
        now = int(time.time())

        def one(uid: str) -> None:
            if overwrite_read:
                self.router.call(uid, wire.CONV_SET, {"uid": uid, "id": sid, "type": ctype, "read_seq": read_seq,
                                                   "now": now})
            else:
                self.router.call(uid, wire.CONV_ENSURE, {"uid": uid, "id": sid, "type": ctype, "read_seq": read_seq,
                                                      "now": now})
        _parallel(one, uids)

    def remove_many(self, uids: list[str], sid: str, ctype: int) -> None:
        _parallel(lambda uid: self.router.call(uid, wire.CONV_REMOVE, {"uid": uid, "id": sid, "type": ctype}), uids)

    def sync(self, uid: str, *, msg_count: int, last_msg_seqs: dict, only_unread: bool, exclude_types: set[int],
             page: int, page_size: int) -> list[dict]:
        if msg_count <= 0:
            return []
        rows = self.router.call(uid, wire.CONV_LIST, {"uid": uid})
        rows.sort(key=lambda r: r[5], reverse=True)
        rows = rows[:MAX_CONVERSATIONS]
        wanted: dict[int, list] = defaultdict(list)
        for sid, ctype, read_seq, deleted, _c, _u in rows:
            cid = person_peer(sid, uid) if ctype == PERSON else sid
            if (cid, ctype) in last_msg_seqs:
                base = last_msg_seqs[(cid, ctype)] + 1
            elif only_unread:
                base = read_seq + 1
            else:
                base = 0
            base = max(base, deleted + 1)
            wanted[self.router.slot_of(sid)].append([sid, ctype, base, msg_count])
        summaries: dict = {}

        def fetch(slot: int, chans: list) -> None:
            got = self.router.call_slot(slot, wire.MSG_SUMMARIES, {"channels": chans, "uid": uid})
            for (sid, ctype, _b, _n), (last, recents, user_last) in zip(chans, got):
                summaries[(sid, ctype)] = (last, recents, user_last)
        _parallel(lambda kv: fetch(*kv), list(wanted.items()))
        return build_sync(uid, rows, summaries, msg_count=msg_count, last_msg_seqs=last_msg_seqs,
                          only_unread=only_unread, exclude_types=exclude_types, page=page, page_size=page_size)


def _parallel(fn, items: list) -> None:
    jobs = [gevent.spawn(fn, it) for it in items]
    gevent.joinall(jobs, raise_error=True)
