"""CMD messages: the rows that say which CMD channels a user has, their read positions, and their sync.

``/message/send`` with ``header.sync_once=1`` stores into the CMD shadow of the channel
(``<storage id>____cmd``, in the same slot as the channel, see ``slot_of``), a log of
its own with its own seqs, kept apart from chat history and conversations. Each
recipient gets a CMD row in the uid's slot (insert-if-absent; read position 0, the
sender's own message read) made by the CMD channel's leader after the message
commits (``ensure_rows``). The read position only moves forward, by:

* ``/message/syncack``: the window handed out by the uid's last ``/message/sync``;
* a RECVACK of the message from one of the uid's master devices.

A master device's RECVACK of a client's SyncOnce message (stored in the chat channel,
not in a CMD log) moves the uid's chat conversation there instead, as in WuKongIM
(``read``).

Unlike WuKongIM, which keeps the last sync's window in one node's memory, the window
and the positions are log operations of the uid's slot: they survive the death of
that slot's leader, and a second device syncing through another node sees them.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict

import gevent

from mesh.im.channel_rules import AGENT, PERSON, SYSTEM_UID, TEMP, cmd_base, is_cmd, person_pair, visitor_of
from mesh.net import wire
from mesh.storage.entries import M_CHANNEL, M_CTYPE, M_FROM, M_SEQ

log = logging.getLogger("mesh.im.cmd")

SYNC_LIMIT_DEFAULT = 200


def register(service) -> None:
    service.register(wire.CMD_ROWS, _rows)
    service.register(wire.CMD_ENSURE, lambda svc, slot, a: svc.propose(slot, wire.OP_CMD_ENSURE, a))
    service.register(wire.CMD_LIST, _list)
    service.register(wire.CMD_SYNCED, lambda svc, slot, a: svc.propose(slot, wire.OP_CMD_SYNCED, a))
    service.register(wire.CMD_ACK, lambda svc, slot, a: svc.propose(slot, wire.OP_CMD_ACK, a))
    service.register(wire.CMD_READ, lambda svc, slot, a: svc.propose(slot, wire.OP_CMD_READ, a))


def recipients(state, sid: str, ctype: int) -> list[str]:
    """Who receives the CMD channel ``sid``: the person pair, or the original channel's subscribers."""
    base = cmd_base(sid)
    if ctype in (PERSON, AGENT):
        return [u for u in person_pair(base) if u != SYSTEM_UID]
    ch = state.channel(base, ctype)
    uids = set(ch.subscribers) if ch is not None else set()
    visitor = visitor_of(ctype, base)
    if visitor:
        uids.add(visitor)
    return sorted(u for u in uids if u != SYSTEM_UID)


def missing_rows(state, sid: str, ctype: int, seq: int, from_uid: str) -> list[list]:
    """[[uid, initial read seq]] of recipients without a CMD row yet (pure): the sender has read its message."""
    if ctype == TEMP:
        return []  # as in WuKongIM: temp channels get no conversation rows
    ch = state.channel(sid, ctype)
    have = ch.convs if ch is not None else set()
    return [[u, seq if u == from_uid else 0] for u in recipients(state, sid, ctype) if u not in have]


def ensure_rows(router, state, propose_op, sid: str, ctype: int, seq: int, from_uid: str) -> int:
    """On the CMD channel's leader: create the missing rows in the uids' slots, then remember them."""
    rows = missing_rows(state, sid, ctype, seq, from_uid)
    if not rows:
        return 0
    by_slot: dict[int, list] = defaultdict(list)
    for row in rows:
        by_slot[router.slot_of(row[0])].append(row)
    jobs = [gevent.spawn(router.call_slot, slot, wire.CMD_ENSURE, {"id": sid, "type": ctype, "rows": group})
            for slot, group in by_slot.items()]
    gevent.joinall(jobs, raise_error=True)
    propose_op(wire.OP_CHANNEL_CONV_ENSURED, {"id": sid, "type": ctype, "uids": [r[0] for r in rows]})
    return len(rows)


def _rows(svc, slot: int, a: dict) -> int:
    state = svc.state(slot)
    ch = state.channel(a["id"], int(a["type"]))
    seq = int(a.get("seq") or (ch.last_seq if ch else 0))
    return ensure_rows(svc.node.router, state, lambda op, args: svc.propose(slot, op, args), a["id"],
                       int(a["type"]), seq, a.get("from_uid", ""))


def _list(svc, slot: int, a: dict) -> list:
    rows = svc.state(slot).cmd.get(a["uid"], {})
    return sorted([cid, ctype, read] for (cid, ctype), read in rows.items())


def take(batches: list[tuple[str, int, list]], limit: int) -> tuple[list, list[list]]:
    """Concatenate per-channel messages up to ``limit`` (pure).

    ``batches``: (CMD channel, type, messages ascending). Returns the messages and the
    window: per channel that contributed, the seq of the last message taken.
    """
    out: list = []
    record: list[list] = []
    for sid, ctype, msgs in batches:
        room = limit - len(out)
        if room <= 0:
            break
        part = msgs[:room]
        if part:
            out.extend(part)
            record.append([sid, ctype, part[-1][M_SEQ]])
    return out, record


class CmdSync:
    """``/message/sync``, ``/message/syncack`` and the RECVACK read move, from any node."""

    def __init__(self, node) -> None:
        self.node = node
        self.router = node.router
        self._inflight: set[tuple[str, int]] = set()

    def sync(self, uid: str, limit: int) -> list:
        rows = self.router.call(uid, wire.CMD_LIST, {"uid": uid})
        batches: list[tuple[str, int, list]] = [(sid, ctype, []) for sid, ctype, _r in rows]

        def fetch(i: int, sid: str, ctype: int, read: int) -> None:
            got = self.router.call(sid, wire.MSG_SYNC, {"id": sid, "type": ctype, "start": read + 1, "end": 0,
                                                        "limit": limit, "pull_mode": 1})
            batches[i] = (sid, ctype, got["messages"])
        jobs = [gevent.spawn(fetch, i, sid, ctype, read) for i, (sid, ctype, read) in enumerate(rows)]
        gevent.joinall(jobs, raise_error=True)
        msgs, record = take(batches, limit)
        self.router.call(uid, wire.CMD_SYNCED, {"uid": uid, "record": record})
        return msgs

    def ack(self, uid: str) -> int:
        return self.router.call(uid, wire.CMD_ACK, {"uid": uid})

    def ensure_rows(self, sid: str, ctype: int, seq: int, from_uid: str) -> int:
        """Make the recipients' rows of a committed CMD message (through the CMD channel's leader)."""
        return self.router.call(sid, wire.CMD_ROWS, {"id": sid, "type": ctype, "seq": seq, "from_uid": from_uid})

    def committed(self, r, data: list) -> None:
        """The leader committed a CMD message: make missing rows in the background."""
        key = (data[M_CHANNEL], data[M_CTYPE])
        if key in self._inflight or not missing_rows(r.state, key[0], key[1], data[M_SEQ], data[M_FROM]):
            return
        self._inflight.add(key)

        def run() -> None:
            try:
                ensure_rows(self.router, r.state, r.propose_op, key[0], key[1], data[M_SEQ], data[M_FROM])
            except Exception as exc:
                log.info("CMD rows for %s not created yet (%s); the next message retries", key[0], exc)
            finally:
                self._inflight.discard(key)
        gevent.spawn(run)

    def read(self, uid: str, sid: str, ctype: int, seq: int) -> None:
        """A master device of ``uid`` acknowledged the SyncOnce message ``seq`` stored in ``sid``.

        A CMD channel: its CMD row's read position. Any other channel (a client's SyncOnce
        SEND takes the chat path): the uid's chat conversation there, as WuKongIM does
        (§1.1's quirk); only forward, and only a row that exists.
        """
        if is_cmd(sid):
            op, args = wire.CMD_READ, {"uid": uid, "id": sid, "type": ctype, "seq": seq}
        else:
            op, args = wire.CONV_SET, {"uid": uid, "id": sid, "type": ctype, "read_seq": seq, "raise_only": True,
                                       "if_exists": True, "now": int(time.time())}
        try:
            self.router.call(uid, op, args)
        except Exception as exc:
            log.info("read position of uid=%s in %s not moved by its RECVACK: %s", uid, sid, exc)
