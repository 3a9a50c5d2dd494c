"""History reads of a channel, served by its slot leader: sync ranges, lookups, summaries.

Only committed messages are ever returned (seq <= the channel's committed last seq).
Sequence numbers are gap-free, so every range query is a seq range. The leader keeps
the newest ``RECENT`` committed messages of recently active channels in memory
(``RecentCache``, bounded by channel count) and answers from it when the range is
inside; otherwise it reads the store (hot table plus the slot's archive, which is
clustered by channel and seq).

``sync_range`` implements WuKongIM's ``/channel/messagesync`` rules (pure): start=end=0
is the newest ``limit``; pull up (1) is seqs in [start, end) (end 0 = open), oldest
first; pull down (0) is the newest ``limit`` of (end, start] and needs end <= start.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, deque

from mesh.im.events import DeltaCache, stream_metas
from mesh.net import wire
from mesh.storage.entries import KIND_MSG, M_SEQ

log = logging.getLogger("mesh.im.history")

RECENT = 100  # messages per channel kept in memory on the leader
RECENT_CHANNELS = 20000  # channels kept per node


def sync_range(start: int, end: int, limit: int, pull_mode: int, last_seq: int) -> tuple[int, int]:
    """Inclusive seq range (lo, hi) for a messagesync request; lo > hi means nothing."""
    if limit <= 0 or last_seq <= 0:
        return 1, 0
    if start == 0 and end == 0:
        return max(1, last_seq - limit + 1), last_seq
    if pull_mode == 1:
        lo = max(1, start)
        hi = last_seq if end == 0 else min(last_seq, end - 1)
        return lo, min(hi, lo + limit - 1)
    if end > start:
        return 1, 0
    hi = min(start, last_seq)
    lo = max(end + 1, hi - limit + 1, 1)
    return lo, hi


class RecentCache:
    """Newest committed messages per channel (the leader's, for reads)."""

    def __init__(self) -> None:
        self.channels: OrderedDict[tuple, deque] = OrderedDict()

    def add(self, slot: int, data: list) -> None:
        key = (slot, data[0], data[1])
        d = self.channels.get(key)
        if d is None:
            d = self.channels[key] = deque(maxlen=RECENT)
            if len(self.channels) > RECENT_CHANNELS:
                self.channels.popitem(last=False)
        else:
            self.channels.move_to_end(key)
        if d and d[-1][M_SEQ] + 1 != data[M_SEQ]:
            d.clear()  # keep only a contiguous run of seqs
        d.append(data if type(data) is tuple else tuple(data))  # untracked by the cycle collector

    def drop_slot(self, slot: int) -> None:
        for key in [k for k in self.channels if k[0] == slot]:
            del self.channels[key]

    def range(self, slot: int, sid: str, ctype: int, lo: int, hi: int) -> list | None:
        """Messages lo..hi from memory, or None if not all of them are there."""
        d = self.channels.get((slot, sid, ctype))
        if not d or lo > hi:
            return None if lo <= hi else []
        first = d[0][M_SEQ]
        last = d[-1][M_SEQ]
        if lo < first or hi > last:
            return None
        return [d[i - first] for i in range(lo, hi + 1)]


def register(service, cache: RecentCache, deltas: DeltaCache | None = None) -> None:
    """Serve the history reads; ``deltas`` (the leader's accumulated stream deltas) feed ``event_meta``."""
    def replica(svc, slot):
        return svc.replica(slot)

    def load(svc, slot: int, sid: str, ctype: int, lo: int, hi: int) -> list:
        if lo > hi:
            return []
        got = cache.range(slot, sid, ctype, lo, hi)
        if got is not None:
            return got
        r = replica(svc, slot)
        rows = r.store.messages(slot, sid, ctype, "seq BETWEEN ? AND ?", [lo, hi], limit=hi - lo + 1,
                                max_idx=r.commit_index)
        return [e[3] for e in rows if e[2] == KIND_MSG]

    def last_seq(svc, slot: int, sid: str, ctype: int) -> tuple[int, bool]:
        ch = svc.state(slot).channel(sid, ctype)
        return (ch.last_seq, ch.exists) if ch else (0, False)

    def msg_sync(svc, slot: int, a: dict) -> dict:
        last, exists = last_seq(svc, slot, a["id"], a["type"])
        lo, hi = sync_range(a["start"], a["end"], a["limit"], a["pull_mode"], last)
        msgs = load(svc, slot, a["id"], a["type"], lo, hi)
        out = {"messages": msgs, "exists": exists or last > 0}
        metas = stream_metas(svc.state(slot).events, deltas, a["id"], a["type"], msgs,
                             basic=a.get("summary_mode") == "basic")
        if metas:  # event_meta of stream messages (mesh.im.events)
            out["event_meta"] = metas
        return out

    def msg_max_seq(svc, slot: int, a: dict) -> dict:
        last, exists = last_seq(svc, slot, a["id"], a["type"])
        return {"seq": last, "exists": exists or last > 0}

    def msg_lookup(svc, slot: int, a: dict) -> dict:
        sid, ctype = a["id"], a["type"]
        last, exists = last_seq(svc, slot, sid, ctype)
        out: list = []
        for seq in a.get("seqs") or []:
            if 1 <= seq <= last:
                out.extend(load(svc, slot, sid, ctype, seq, seq))
        r = replica(svc, slot)
        for mid in a.get("ids") or []:
            out.extend(e[3] for e in r.store.messages(slot, sid, ctype, "mid = ?", [int(mid)], limit=1,
                                                      max_idx=r.commit_index))
        for cmn in a.get("cmns") or []:
            out.extend(e[3] for e in r.store.messages(slot, sid, ctype, "cmn = ?", [cmn], limit=1,
                                                      max_idx=r.commit_index))
        return {"messages": out, "exists": exists or last > 0}

    def msg_summaries(svc, slot: int, a: dict) -> list:
        """Per channel: [last seq, newest messages (newest first), last seq sent by ``uid``], plus, when
        ``with_meta`` is asked, the event fields of its stream messages by client_msg_no."""
        out = []
        state = svc.state(slot)
        for sid, ctype, base, count in a["channels"]:
            ch = state.channel(sid, ctype)
            last = ch.last_seq if ch else 0
            lo = max(base, 1, last - count + 1)
            msgs = load(svc, slot, sid, ctype, lo, last) if last else []
            row = [last, list(reversed(msgs)), ch.senders.get(a.get("uid", ""), 0) if ch else 0]
            if a.get("with_meta"):
                row.append(stream_metas(state.events, deltas, sid, ctype, msgs))
            out.append(row)
        return out

    service.register(wire.MSG_SYNC, msg_sync)
    service.register(wire.MSG_MAX_SEQ, msg_max_seq)
    service.register(wire.MSG_LOOKUP, msg_lookup)
    service.register(wire.MSG_SUMMARIES, msg_summaries)

