"""Conversations: each user's list of chats with read and deleted positions, and their sync.

A user's conversation rows live in the user's slot (``crc32(uid)``). They are created
as WuKongIM v2.2.5 creates them: for both people of a person chat with its first
message (the sender has read it), for subscribers added to a group (read up to the
channel's last message), and by ``clearUnread``/``setUnread``; group messages never
create rows. ``/conversation/sync`` reads the rows, then asks each channel's slot
leader for its newest messages, and computes unread counts at that moment
(``build_sync``, pure). ``sync_by_channels`` answers the same element shape for a
given list of channels (one element each, even without a row or messages:
``build_by_channels``, pure); ``channels`` lists a user's chat rows; ``recent_messages``
serves ``/conversation/syncMessages`` (per channel a window of messages and the seq of
the user's own last message there).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict

import gevent

from mesh.im.channel_rules import PERSON, SYSTEM_UID, fake_channel_id, person_peer
from mesh.im.events import message_resps
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
    ``uid`` sent there[, event fields of its stream messages by client_msg_no]) with
    recents already limited to seq >= the base position chosen for that row.
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
        _last_seq, recents, user_last, *metas = summary
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
            "recents": message_resps(recents, metas[0] if metas else None),
        })
    out.sort(key=lambda c: (c["timestamp"], c["last_msg_seq"]), reverse=True)
    if page > 0:
        out = out[(page - 1) * page_size: page * page_size]
    return out


CMD_SUFFIX = "____cmd"


def unread_of(last_seq: int, read_seq: int, user_last: int, newest_from: str | None, uid: str) -> tuple[int, int]:
    """WuKongIM's (unread, readed_to_msg_seq) of one conversation (pure)."""
    unread = last_seq - read_seq if last_seq > read_seq else 0
    readed = read_seq
    if user_last > readed and last_seq - user_last < unread:
        unread = last_seq - user_last  # the user has read up to their own last message
        readed = user_last
    if newest_from is not None and newest_from == uid:
        readed = last_seq
        unread = 0
    return unread, readed


def build_by_channels(uid: str, wanted: list[tuple[str, str, int]], rows: dict, summaries: dict) -> list[dict]:
    """The ``/conversation/syncByChannels`` answer (pure): one element per wanted channel, in order.

    ``wanted``: (channel id as asked, stored id, type); ``rows[(stored id, type)]``: the
    user's row [stored id, type, read seq, deleted seq, created, updated] if any;
    ``summaries[(stored id, type)]``: (last seq, recents newest first, the user's last seq).
    """
    out = []
    for cid, sid, ctype in wanted:
        row = rows.get((sid, ctype))
        read_seq = row[2] if row else 0
        last, recents, user_last, *_ = summaries.get((sid, ctype), (0, [], 0))
        newest = recents[0] if recents else None
        last_seq = newest[M_SEQ] if newest else last
        unread, readed = unread_of(last_seq, read_seq, user_last, newest[M_FROM] if newest else None, uid)
        if newest:
            version = newest[M_TS] * 1_000_000_000
        else:
            version = (row[5] if row else 0) * 1_000_000_000
        out.append({
            "channel_id": cid, "channel_type": ctype, "unread": unread, "timestamp": newest[M_TS] if newest else 0,
            "last_msg_seq": last_seq, "last_client_msg_no": newest[M_CMN] if newest else "", "offset_msg_seq": 0,
            "readed_to_msg_seq": readed, "version": version, "recents": [message_resp(m) for m in recents],
        })
    return out


def message_window(last_msg_seq: int, msg_count: int, order_by_last: bool) -> tuple[int, int, int]:
    """``/conversation/syncMessages``' window of one channel (pure): (pull_mode, start, base).

    Not ordered by last: seqs >= ``last_msg_seq`` ascending (a pull-up sync from
    ``start``). Ordered by last: the newest ``msg_count`` of the seqs > ``last_msg_seq``-1,
    newest first (a summary from ``base``; base 0 = the newest).
    """
    if not order_by_last:
        return 1, max(1, last_msg_seq), 0
    e = last_msg_seq - 1 if last_msg_seq > 0 else 0
    return 0, 0, (e + 1 if e > 0 else 0)


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
            got = self.router.call_slot(slot, wire.MSG_SUMMARIES, {"channels": chans, "uid": uid, "with_meta": True})
            for (sid, ctype, _b, _n), summary in zip(chans, got):
                summaries[(sid, ctype)] = tuple(summary)
        _parallel(lambda kv: fetch(*kv), list(wanted.items()))
        return build_sync(uid, rows, summaries, msg_count=msg_count, last_msg_seqs=last_msg_seqs,
                          only_unread=only_unread, exclude_types=exclude_types, page=page, page_size=page_size)


    def channels(self, uid: str) -> list[dict]:
        """The user's chat conversations (stored ids, no CMD rows), de-duplicated."""
        rows = self.router.call(uid, wire.CONV_LIST, {"uid": uid})
        seen: dict = {}
        for sid, ctype, *_ in rows:
            if not sid.endswith(CMD_SUFFIX):
                seen.setdefault((sid, ctype), {"channel_id": sid, "channel_type": ctype})
        return list(seen.values())

    def _summaries(self, uid: str, chans: list[list], with_meta: bool = False) -> dict:
        """{(sid, type): (last seq, recents newest first, uid's last seq[, event fields])} for [sid, type, base,
        count]."""
        by_slot: dict[int, list] = defaultdict(list)
        for c in chans:
            by_slot[self.router.slot_of(c[0])].append(c)
        out: dict = {}

        def fetch(slot: int, part: list) -> None:
            got = self.router.call_slot(slot, wire.MSG_SUMMARIES, {"channels": part, "uid": uid,
                                                                  "with_meta": with_meta})
            for (sid, ctype, _b, _n), summary in zip(part, got):
                out[(sid, ctype)] = tuple(summary)
        _parallel(lambda kv: fetch(*kv), list(by_slot.items()))
        return out

    def sync_by_channels(self, uid: str, channels: list[tuple[str, int]], msg_count: int) -> list[dict]:
        wanted = [(cid, fake_channel_id(uid, cid) if ctype == PERSON else cid, ctype) for cid, ctype in channels]
        rows = {(r[0], r[1]): r for r in self.router.call(uid, wire.CONV_LIST, {"uid": uid})}
        summaries = self._summaries(uid, [[sid, ctype, 0, msg_count] for _c, sid, ctype in dict.fromkeys(wanted)])
        return build_by_channels(uid, wanted, rows, summaries)

    def recent_messages(self, uid: str, channels: list[tuple[str, int, int]], msg_count: int,
                        order_by_last: bool) -> list[dict]:
        """Per (stored id, type, last_msg_seq): its window of messages and uid's last seq there."""
        windows = [(sid, ctype, *message_window(last, msg_count, order_by_last)) for sid, ctype, last in channels]
        summaries = self._summaries(uid, [[sid, ctype, base, msg_count if order_by_last else 0]
                                          for sid, ctype, _pm, _start, base in windows], with_meta=order_by_last)
        ascending: dict = {}

        def pull(sid: str, ctype: int, start: int) -> None:
            got = self.router.call(sid, wire.MSG_SYNC, {"id": sid, "type": ctype, "start": start, "end": 0,
                                                        "limit": msg_count, "pull_mode": 1})
            ascending[(sid, ctype)] = (got["messages"], got.get("event_meta"))
        if not order_by_last:
            _parallel(lambda w: pull(w[0], w[1], w[3]), windows)
        out = []
        for sid, ctype, _pm, _start, _base in windows:
            _last, recents, user_last, *metas = summaries.get((sid, ctype), (0, [], 0))
            msgs, meta = (recents, metas[0] if metas else None) if order_by_last else \
                ascending.get((sid, ctype), ([], None))
            out.append({"channel_id": sid, "channel_type": ctype, "messages": message_resps(msgs, meta),
                        "user_last_msg_seq": user_last})
        return out


def _parallel(fn, items: list) -> None:
    jobs = [gevent.spawn(fn, it) for it in items]
    gevent.joinall(jobs, raise_error=True)
