"""The write path of messages, from any node to the channel's slot leader and out to recipients.

Origin node (the one holding the client connection or serving the HTTP call):
``submit()`` finds the leader of the channel's slot and queues the send for it; one
batcher per leader node sends batches over the mesh without waiting for the previous
reply (the mesh keeps their order), or calls the local leader directly. Sends whose
leader moved are re-routed until their deadline, then answered with SystemError (15).

Slot leader (``msg.send``): each slot's items are taken in arrival order, one batch
at a time, by a FIFO turn per slot (no lock spans slots, so a slow remote lookup for
one slot never holds up another): the permissions are checked (WuKongIM's order and
reason codes, see ``mesh.im.channel_rules``), a retry of a known (channel, from_uid, client_msg_no) gets
the original message id and seq, otherwise the next gap-free seq of the channel and a
snowflake id are assigned and the entry is proposed to the slot's replicas. The reply
goes back once a majority has the entry durably (SENDACK after quorum). NoPersist
messages get seq 0 and are only delivered to online recipients.

On commit the leader broadcasts the message, its recipients and the sending
connection to skip (``msg.deliver_many``: every message committed in one hub turn in
one broadcast); every node queues the message for its own sessions of the recipients
(``Gateway.deliver_later``: neither the commit path nor the broadcast loop ever waits
on a client). It also creates missing person-chat conversations and queues webhooks.
"""
from __future__ import annotations

import logging
import time

import gevent
import gevent.event

from gateway import wkproto as wk
from gateway.ports import Delivery, SendRequest, SendResult
from mesh.base import metrics
from mesh.im.channel_rules import (
    AGENT,
    CUSTOMER_SERVICE,
    PERSON,
    SYSTEM_DEVICE,
    SYSTEM_UID,
    TEMP,
    ChannelView,
    check_send,
    cmd_base,
    is_cmd,
    person_pair,
    person_peer,
    storage_id,
    visitor_of,
)
from mesh.im.sequencer import Sequencer
from mesh.im.snowflake import Snowflake
from mesh.net import wire
from mesh.net.transport import MeshError, RemoteError
from mesh.replication.replica import NotLeader, SlotReplica
from mesh.storage.entries import KIND_MSG, M_CHANNEL, M_CTYPE, M_FROM, M_SEQ, M_TS

log = logging.getLogger("mesh.im.messages")

R_NOT_LEADER = -1  # internal: the item must be re-routed
BATCH_MAX = 500  # at most this many send items in one msg.send request
REDELIVER_MAX = 5000  # a new leader re-delivers at most this many recent messages...
REDELIVER_AGE = 60.0  # ...committed within this many seconds (older ones are for sync)

# wire item: [slot, from_uid, channel_id, channel_type, payload, client_msg_no, flags, setting, expire, topic,
#             device_flag, conn_node, conn_id, system, temp_subscribers]


class _Pending:
    __slots__ = ("req", "done", "slot", "deadline", "system", "subscribers")

    def __init__(self, req: SendRequest, done, slot: int, deadline: float, system: bool,
                 subscribers: list[str] | None) -> None:
        self.req = req
        self.done = done
        self.slot = slot
        self.deadline = deadline
        self.system = system
        self.subscribers = subscribers

    def wire(self) -> list:
        r = self.req
        return [self.slot, r.from_uid, r.channel_id, r.channel_type, r.payload, r.client_msg_no, r.flags, r.setting,
                r.expire, r.topic, r.device_flag, r.conn[0], r.conn[1], self.system, self.subscribers]


class _Batcher:
    """Sends queued items to one leader node, batch after batch, never waiting for replies in between.

    A batch holds the items of one slot: the leader answers a request once every item in
    it is committed (or refused), so items of a slot that cannot commit yet (its person
    flags live in a slot without a leader, its quorum is gone) must not share a reply
    with another slot's items.
    """

    def __init__(self, svc: Messages, node: int) -> None:
        self.svc = svc
        self.node = node
        self.items: list[_Pending] = []
        self.event = gevent.event.Event()
        self.greenlet = gevent.spawn(self._loop)

    def add(self, item: _Pending) -> None:
        self.items.append(item)
        self.event.set()

    def _loop(self) -> None:
        while True:
            self.event.wait()
            self.event.clear()
            gevent.sleep(0)  # let concurrent submitters join this batch
            items, self.items = self.items, []
            by_slot: dict[int, list[_Pending]] = {}
            for it in items:
                by_slot.setdefault(it.slot, []).append(it)
            for part in by_slot.values():
                for i in range(0, len(part), BATCH_MAX):
                    gevent.spawn(self.svc._send_batch, self.node, part[i:i + BATCH_MAX])


class Messages:
    def __init__(self, node) -> None:
        self.node = node
        self.node_id = node.node_id
        self.router = node.router
        self.snowflake = Snowflake(node.node_id)
        self.batchers: dict[int, _Batcher] = {}
        # per slot, the turn of the last batch that arrived: batches of one slot are checked and
        # proposed in arrival order, and a slow lookup for one slot never holds up another
        self._slot_turns: dict[int, gevent.event.Event] = {}
        self.timeout = node.cfg["cluster.requestTimeout"] * 2
        self.person_whitelist = not node.cfg["whitelistOffOfPerson"]
        self._conv_inflight: set[tuple] = set()
        self.delivered: dict[int, int] = {}  # slot -> highest log index seen delivered (by any leader)
        self.sequencers: dict[int, Sequencer] = {}  # slot -> sequencer state of this node's leadership
        node.mesh.handle(wire.MSG_SEND, self._on_send)
        self._outbox: list[list] = []
        node.mesh.subscribe(wire.MSG_DELIVER, self._on_deliver)
        node.mesh.subscribe(wire.MSG_DELIVER_MANY, self._on_deliver_many)

    # ------------------------------------------------------------------ origin side
    def submit(self, req: SendRequest, done, *, system: bool = False, subscribers: list[str] | None = None) -> None:
        """The gateway's MessageSink: route the send to its slot leader; ``done(SendResult)`` later."""
        if req.channel_type == PERSON and not req.channel_id:
            done(SendResult(wk.REASON_CHANNEL_ID_ERROR))
            return
        sid = storage_id(req.channel_type, req.channel_id, req.from_uid)
        item = _Pending(req, done, self.router.slot_of(sid), time.monotonic() + self.timeout,
                        system or req.from_uid == SYSTEM_UID or req.device_flag == SYSTEM_DEVICE, subscribers)
        self._route(item)

    def send_sync(self, req: SendRequest, *, system: bool = False, subscribers: list[str] | None = None,
                  timeout: float | None = None) -> SendResult:
        """Submit and wait (HTTP API)."""
        ar: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.submit(req, ar.set, system=system, subscribers=subscribers)
        try:
            return ar.get(timeout=timeout or self.timeout + 1)
        except gevent.Timeout:
            return SendResult(wk.REASON_SYSTEM_ERROR)

    def _route(self, item: _Pending) -> None:
        leader = self.router.leader_of(item.slot)
        if not leader:
            self._retry_later(item, "no leader")
            return
        b = self.batchers.get(leader)
        if b is None or b.greenlet.dead:
            b = self.batchers[leader] = _Batcher(self, leader)
        b.add(item)

    def _retry_later(self, item: _Pending, why: str) -> None:
        if time.monotonic() > item.deadline:
            log.warning("send from uid=%s to %s:%s failed after retries: %s", item.req.from_uid,
                        item.req.channel_type, item.req.channel_id, why)
            self._finish(item, SendResult(wk.REASON_SYSTEM_ERROR))
            return
        gevent.spawn_later(0.05, self._route, item)

    def _finish(self, item: _Pending, res: SendResult) -> None:
        try:
            item.done(res)
        except Exception:
            log.exception("SENDACK callback failed")

    def _send_batch(self, leader: int, batch: list[_Pending]) -> None:
        try:
            if leader == self.node_id:
                results = self._on_send(self.node_id, [it.wire() for it in batch])
            else:
                results = self.node.mesh.request(leader, wire.MSG_SEND, [it.wire() for it in batch],
                                                 timeout=self.timeout)
        except (MeshError, RemoteError) as exc:
            for it in batch:
                self._retry_later(it, str(exc))
            return
        for it, (reason, mid, seq) in zip(batch, results):
            if reason == R_NOT_LEADER:
                self._retry_later(it, "leader moved")
            else:
                self._finish(it, SendResult(reason, mid, seq))

    # ------------------------------------------------------------------ leader side
    def _on_send(self, sender: int, items: list) -> list:
        """Check, sequence and propose a batch; the items of each slot in their arrival order.

        No lock spans slots: the person-flags lookup (a remote call to the uids' slots,
        retried up to the request timeout) holds up only the sends of the slot whose
        items need it. Each slot's items wait for the previous batch's items of the same
        slot (a turn taken on arrival, before anything yields), so seqs follow arrival.
        This node's batchers send one slot per request; a batch of several slots comes
        from a node of an earlier release during a rolling restart, and is still served.
        """
        results: list = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(it[0], []).append(i)
        turns = []
        for slot in groups:
            prev = self._slot_turns.get(slot)
            mine = self._slot_turns[slot] = gevent.event.Event()
            turns.append((slot, prev, mine))
        waits: list[tuple[int, gevent.event.AsyncResult, int, int]] = []
        if len(turns) == 1:
            slot, prev, mine = turns[0]
            self._send_slot(items, groups[slot], prev, mine, slot, results, waits)
        else:
            gevent.joinall([gevent.spawn(self._send_slot, items, groups[slot], prev, mine, slot, results, waits)
                            for slot, prev, mine in turns])
        for i, ar, mid, seq in waits:
            try:
                ar.get(timeout=self.timeout)
                results[i] = [wk.REASON_SUCCESS, mid, seq]
            except (NotLeader, gevent.Timeout):
                results[i] = [R_NOT_LEADER, 0, 0]
        return [r if r is not None else [R_NOT_LEADER, 0, 0] for r in results]

    def _send_slot(self, items: list, idxs: list[int], prev: gevent.event.Event | None, mine: gevent.event.Event,
                   slot: int, results: list, waits: list) -> None:
        try:
            if prev is not None:
                prev.wait()
            uids = set()
            for i in idxs:
                it = items[i]
                if not it[13]:
                    uids.add(it[1])  # the sender's send_ban
                    if it[3] == PERSON:
                        uids.add(it[2])  # the receiver's deny/allow lists
            try:
                perms = self.node.person_perms.get_many(uids) if uids else {}
            except Exception as exc:
                log.warning("slot %d: person flags unavailable (%s); sends will be retried", slot, exc)
                for i in idxs:
                    results[i] = [R_NOT_LEADER, 0, 0]
                return
            r = self.node.replication.serving(slot)
            for i in idxs:
                if r is None:
                    results[i] = [R_NOT_LEADER, 0, 0]
                    continue
                try:
                    out = self._propose(r, items[i], perms)
                except NotLeader:
                    results[i] = [R_NOT_LEADER, 0, 0]
                    continue
                if isinstance(out, list):
                    results[i] = out
                else:
                    ar, mid, seq = out
                    waits.append((i, ar, mid, seq))
        finally:
            mine.set()
            if self._slot_turns.get(slot) is mine:
                del self._slot_turns[slot]

    def _propose(self, r: SlotReplica, it: list, perms: dict) -> list | tuple:
        (_slot, from_uid, channel_id, ctype, payload, cmn, flags, setting, expire, topic, _dflag, cnode, cconn,
         system, temp_subs) = it
        sid = storage_id(ctype, channel_id, from_uid)
        state = r.state
        cmd = is_cmd(sid) and ctype != TEMP
        ch = state.channel(cmd_base(sid) if cmd else sid, ctype)
        view = None
        if ch is not None:
            # a CMD channel: the original's lists; its ban and disband are not looked at (as in WuKongIM)
            view = ChannelView(ch.exists, 0 if cmd else ch.flag("ban"), 0 if cmd else ch.flag("disband"),
                               ch.subscribers, ch.deny, ch.allow)
        if ctype == TEMP and temp_subs is not None:
            view = ChannelView(True, 0, 0, frozenset(temp_subs) | {from_uid})
        reason = check_send(ctype, cmd_base(sid if ctype == AGENT else channel_id), from_uid, view, perms.get(from_uid),
                            perms.get(channel_id) if ctype == PERSON else None, system=system,
                            person_whitelist=self.person_whitelist, system_uids=self.node.system_uids.current)
        if reason != wk.REASON_SUCCESS:
            metrics.messages_refused.labels(str(reason)).inc()
            return [reason, 0, 0]
        dk = (sid, ctype, from_uid, cmn)
        seen = state.seen(*dk)
        if seen is not None:
            metrics.messages_deduplicated.inc()
            return [wk.REASON_SUCCESS, seen[0], seen[1]]
        sequencer = self._sequencer(r)
        pending = sequencer.pending(dk)
        if pending is not None:
            metrics.messages_deduplicated.inc()
            return pending  # (result, message id, seq) of the same send still in flight
        mid = self.snowflake.next()
        ts = int(time.time())
        exclude = (cnode, cconn) if cnode else None
        if flags & wk.FLAG_NO_PERSIST:
            data = [sid, ctype, 0, mid, from_uid, cmn, ts, flags, setting, expire, topic, payload]
            self._publish(data, self._recipients(r, data, temp_subs), exclude, r.slot, 0)
            return [wk.REASON_SUCCESS, mid, 0]
        seq = sequencer.next_seq((sid, ctype), state)
        data = [sid, ctype, seq, mid, from_uid, cmn, ts, flags, setting, expire, topic, payload]
        ar = r.propose(KIND_MSG, data, meta=(exclude, temp_subs))
        sequencer.add(dk, (ar, mid, seq))
        ar.rawlink(lambda _a, dk=dk, s=sequencer: s.done(dk))
        return (ar, mid, seq)

    def _sequencer(self, r: SlotReplica) -> Sequencer:
        """The sequencer of ``r``'s current leadership (made by ``on_leader_ready``)."""
        s = self.sequencers.get(r.slot)
        if s is None or s.term != r.term:  # the ready hook has not run for this term (never the case today)
            s = self.sequencers[r.slot] = Sequencer(r.term)
        return s

    def on_leader_ready(self, r: SlotReplica, upto: int) -> int:
        """The replica's ready hook: a leadership of ``r``'s slot is ready here.

        Called before the replica accepts any proposal of this leadership: the sequencer
        starts empty (seqs continue from the applied state, which now holds everything
        committed), then committed messages the previous leader may not have delivered
        are delivered again (``redeliver``).
        """
        self.sequencers[r.slot] = Sequencer(r.term)
        return self.redeliver(r, upto)

    # ------------------------------------------------------------------ after commit (leader)
    def on_commit(self, r: SlotReplica, entry: tuple, meta) -> None:
        """Replica apply hook for committed MSG entries on the leader."""
        data = entry[3]
        exclude, temp_subs = meta if meta else (None, None)
        recipients = self._recipients(r, data, temp_subs)
        self._publish(data, recipients, exclude, r.slot, entry[0])
        ctype = data[M_CTYPE]
        if is_cmd(data[M_CHANNEL]):
            self.node.cmd.committed(r, data)  # CMD rows, never chat conversations
        elif ctype == PERSON:
            self._ensure_convs(r, data, person_pair(data[M_CHANNEL]))
        elif ctype == CUSTOMER_SERVICE and data[M_SEQ] == 1:
            self._ensure_convs(r, data, recipients)  # as in WuKongIM: with the first message only
        hooks = self.node.webhooks
        if hooks is not None:
            hooks.message_committed(data, recipients)

    def _recipients(self, r: SlotReplica, data: list, temp_subs) -> list[str]:
        ctype = data[M_CTYPE]
        sid = data[M_CHANNEL]
        if ctype in (PERSON, AGENT):
            return [u for u in person_pair(cmd_base(sid)) if u != SYSTEM_UID]
        if temp_subs:
            return sorted(set(temp_subs) | {data[M_FROM]})
        base = cmd_base(sid) if ctype != TEMP else sid
        ch = r.state.channel(base, ctype)
        visitor = visitor_of(ctype, base)
        if visitor:  # visitors and customer-service channels: the subscribers and the visitor
            return [u for u in (ch.subscribers if ch is not None else set()) | {visitor} if u != SYSTEM_UID]
        return [u for u in ch.subscribers if u != SYSTEM_UID] if ch is not None else [data[M_FROM]]

    def _publish(self, data: list, recipients: list[str], exclude, slot: int, idx: int) -> None:
        """Deliver to this node's sessions now; to the other nodes in one broadcast per hub turn."""
        item = [data, recipients, list(exclude) if exclude else None, time.time(), slot, idx]
        self._on_deliver(self.node_id, item)
        self._outbox.append(item)
        if len(self._outbox) == 1:
            gevent.get_hub().loop.run_callback(self._flush_outbox)

    def _flush_outbox(self) -> None:
        items, self._outbox = self._outbox, []
        if items:
            self.node.mesh.publish_remote(wire.MSG_DELIVER_MANY, items)

    def _on_deliver_many(self, sender: int, items: list) -> None:
        for item in items:
            self._on_deliver(sender, item)

    def redeliver(self, r: SlotReplica, upto: int) -> int:
        """A new leader re-delivers committed messages its predecessor may not have delivered.

        Every node remembers the highest log index it saw delivered per slot; entries
        after it up to ``upto`` (what this node had applied when it took over) are
        delivered again. Clients deduplicate by message id.
        """
        start = max(self.delivered.get(r.slot, 0) + 1, upto - REDELIVER_MAX + 1)
        oldest = time.time() - REDELIVER_AGE
        n = 0
        while start <= upto:
            last = min(upto, start + 999)
            for e in r.entries(start, last):
                if e[2] == KIND_MSG and e[3][M_TS] >= oldest:
                    self.on_commit(r, e, None)
                    n += 1
            start = last + 1
        if n:
            log.info("slot %d: re-delivered %d committed message(s) the previous leader may not have", r.slot, n)
        return n

    def _on_deliver(self, sender: int, payload: list) -> None:
        data, recipients, exclude, committed_at, slot, idx = payload
        if idx > self.delivered.get(slot, 0):
            self.delivered[slot] = idx
        sid, ctype, seq, mid, from_uid, cmn, ts, flags, setting, expire, topic, body = data
        cmd = is_cmd(sid) and ctype != TEMP
        base = cmd_base(sid) if cmd else sid
        if ctype == PERSON:
            addressed = person_peer(base, from_uid)
        elif ctype == AGENT:
            addressed = base.partition("@")[2] or base  # the agent's uid, for both sides (as in WuKongIM)
        else:
            addressed = base
        shown = "" if from_uid == SYSTEM_UID else from_uid  # WuKongIM shows the system uid as ""
        d = Delivery(mid, seq, cmn, shown, addressed, ctype, ts, body, flags, setting, expire, topic or "",
                     committed_at)
        if seq and (cmd or flags & wk.FLAG_SYNC_ONCE):
            # a master device's RECVACK moves the read position of where it is stored: the CMD row, or (a
            # client's SyncOnce SEND, WuKongIM's quirk) the chat conversation (``CmdSync.read``)
            d.extra = {"cmd": (sid, ctype)}
        self.node.gateway.deliver_later(d, recipients, tuple(exclude) if exclude else None)

    def _ensure_convs(self, r: SlotReplica, data: list, uids: list[str]) -> None:
        """Create the missing conversation rows of ``uids`` (person chats, customer service)."""
        sid, ctype = data[M_CHANNEL], data[M_CTYPE]
        ch = r.state.channel(sid, ctype)
        missing = [u for u in uids if ch is None or u not in ch.convs]
        key = (sid, ctype)
        if not missing or key in self._conv_inflight:
            return
        self._conv_inflight.add(key)
        # as in WuKongIM: the sender has read its own message, the receiver has not
        reads = {u: (data[M_SEQ] if u == data[M_FROM] else 0) for u in missing}
        gevent.spawn(self._create_person_convs, r, sid, ctype, reads, key)

    def _create_person_convs(self, r: SlotReplica, sid: str, ctype: int, reads: dict[str, int], key) -> None:
        uids = list(reads)
        try:
            for uid, read_seq in reads.items():
                self.router.call(uid, wire.CONV_ENSURE, {"uid": uid, "id": sid, "type": ctype, "read_seq": read_seq,
                                                      "now": int(time.time())})
            if r.is_serving():
                r.propose_op(wire.OP_CHANNEL_CONV_ENSURED, {"id": sid, "type": ctype, "uids": uids})
        except Exception as exc:
            log.info("person conversations for %s not created yet (%s); the next message retries", sid, exc)
        finally:
            self._conv_inflight.discard(key)


def message_resp(data: list, for_uid: str | None = None) -> dict:
    """WuKongIM's MessageResp JSON for one stored message."""
    import base64

    sid, ctype, seq, mid, from_uid, cmn, ts, flags, setting, expire, topic, payload = data
    if ctype == PERSON and is_cmd(sid):
        cid = sid.rpartition("@")[2]  # WuKongIM's MessageResp quirk: "<second uid>____cmd"
    else:
        cid = person_peer(sid, from_uid) if ctype == PERSON else sid
    resp = {"header": {"no_persist": flags & 1, "red_dot": (flags >> 1) & 1, "sync_once": (flags >> 2) & 1},
            "setting": setting, "message_id": mid, "message_idstr": str(mid), "client_msg_no": cmn,
            "message_seq": seq, "from_uid": "" if from_uid == SYSTEM_UID else from_uid, "channel_id": cid,
            "channel_type": ctype, "expire": expire, "timestamp": ts,
            "payload": base64.b64encode(payload).decode()}
    if topic:
        resp["topic"] = topic
    return resp

