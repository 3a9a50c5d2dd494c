"""Message endpoints of the WuKongIM v2.2.5 HTTP API.

* ``POST /message/send`` answers ``{"status":200,"data":{"message_id","client_msg_no","message_seq"}}``
  once a majority of the channel's replicas has the message (WuKongIM answers before
  persisting; Skein waits, so a 200 means the message is durable). An empty
  ``from_uid`` sends as the system uid. HTTP sends skip the sender checks, as in
  WuKongIM. As in WuKongIM, a send to an unknown group is stored (200, with a ``msg``
  saying nobody reads it) and a send refused by a ban or disband answers 200 too, with
  ``message_id`` 0, ``msg`` and ``reason_code`` (logged and counted either way). Over the
  per-``from_uid`` or per-token rate (``api.rate_limit``) it answers 429
  ``{"msg": ..., "status": 429}``.
* ``POST /message/sendbatch`` answers a bare ``{"fail_uids":[...],"reason":[...]}`` as soon
  as the batch is durably queued in the from_uid's slot log; the messages follow
  (``mesh/im/send_batches.py``).
* ``POST /channel/messagesync``, ``POST /messages`` answer a bare
  ``{"start_message_seq","end_message_seq","more","messages":[MessageResp...]}``;
  ``POST /message`` a MessageResp or ``{"status":404}``; ``GET /channel/max_message_seq``
  ``{"message_seq":n}``. Person chats are addressed with the peer's uid plus
  ``login_uid``. An unknown channel is an empty 200 (logged and counted).
* ``header.sync_once=1`` with a ``channel_id`` stores a CMD message in the channel's
  ``____cmd`` log (see ``mesh.im.cmd``), not in chat history.
"""
from __future__ import annotations

import base64
import binascii
import logging
import uuid

import falcon

from api.channels import channel_of, uids_of
from api.errors import lenient
from api.validate import body_of, int_field, str_field, str_list
from gateway import wkproto as wk
from gateway.ports import SendRequest
from mesh.im.channel_rules import (
    AGENT,
    CUSTOMER_SERVICE,
    PERSON,
    SYSTEM_UID,
    TEMP,
    VISITORS,
    agent_channel_id,
    cmd_channel,
    fake_channel_id,
    is_special,
    storage_id,
    subscribers_cmd_channel,
)
from mesh.im.events import message_resps
from mesh.im.messages import message_resp
from mesh.net import wire
from mesh.net.transport import MeshError
from mesh.slots.router import SlotCallError, SlotUnavailable

log = logging.getLogger("api.messages")

SYNC_LIMIT_MAX = 10000
SYNC_LIMIT_DEFAULT = 100
ONLINE_CMD_CHANNEL = "systemcmdonline"
NEED_NO_CHANNEL = (PERSON, CUSTOMER_SERVICE, VISITORS, AGENT)  # made by their first message


def header_flags(body: dict) -> int:
    h = body.get("header")
    if h is None:
        return 0
    if not isinstance(h, dict):
        raise falcon.HTTPBadRequest(title="header must be an object")
    flags = 0
    for name, bit in (("no_persist", wk.FLAG_NO_PERSIST), ("red_dot", wk.FLAG_RED_DOT),
                      ("sync_once", wk.FLAG_SYNC_ONCE)):
        v = h.get(name, 0)
        if isinstance(v, bool):
            v = int(v)
        if v not in (0, 1):
            raise falcon.HTTPBadRequest(title=f"header.{name} must be 0 or 1")
        if v:
            flags |= bit
    return flags


def payload_of(body: dict) -> bytes:
    raw = body.get("payload")
    if not isinstance(raw, str) or not raw:
        raise falcon.HTTPBadRequest(title="payload (base64 string) is required")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise falcon.HTTPBadRequest(title="payload is not valid base64") from None
    if len(data) > 512 * 1024:
        raise falcon.HTTPBadRequest(title="payload is larger than 512 KiB")
    return data


def storage_of(node, cid: str, ctype: int, login_uid: str) -> str:
    if ctype == PERSON:
        if "@" in cid:
            return cid
        if not login_uid:
            raise falcon.HTTPBadRequest(title="login_uid is required for a person channel")
        return fake_channel_id(login_uid, cid)
    if ctype == AGENT and "@" not in cid:
        if not login_uid:
            raise falcon.HTTPBadRequest(title="login_uid (the user) or channel_id user@agent is required for an "
                                              "agent channel")
        return agent_channel_id(login_uid, cid)
    return cid


class _Base:
    def __init__(self, node) -> None:
        self.node = node

    def call(self, fn, *args):
        return self.node.call_or_503(fn, *args)

    def send(self, req: SendRequest, *, subscribers=None) -> tuple[int, int, int]:
        res = self.node.messages.send_sync(req, system=True, subscribers=subscribers)
        if res.reason == wk.REASON_SYSTEM_ERROR:
            raise falcon.HTTPServiceUnavailable(title="retry required", description="the channel's slot has no "
                                                "leader right now")
        return res.reason, res.message_id, res.message_seq


class MessageSend(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        payload = payload_of(body)
        flags = header_flags(body)
        from_uid = str_field(body, "from_uid").strip() or SYSTEM_UID
        if is_special(from_uid):
            raise falcon.HTTPBadRequest(title="from_uid must not contain '@', '#' or '&'")
        limits = getattr(self.node, "http_limits", None)
        if limits is not None:
            limits.check(from_uid, req.get_header("token") or "")
        cmn = str_field(body, "client_msg_no", max_len=128) or uuid.uuid4().hex + "0"
        expire = int_field(body, "expire", 0, lo=0, hi=2**32 - 1)
        subs = uids_of(body, "subscribers", required=False)
        raw_cid = body.get("channel_id")
        unknown = ""
        if subs:
            if raw_cid:
                raise falcon.HTTPBadRequest(title="give either channel_id or subscribers, not both")
            if not flags & wk.FLAG_SYNC_ONCE:
                raise falcon.HTTPBadRequest(title="sending to subscribers needs header.sync_once = 1")
            # as in WuKongIM: the FNV-1a-64 id of the uids in request order, or the online-only channel
            cid = ONLINE_CMD_CHANNEL if flags & wk.FLAG_NO_PERSIST else subscribers_cmd_channel(subs)
            ctype = TEMP
        else:
            cid, ctype = channel_of(body)
            if ctype not in NEED_NO_CHANNEL and not self.call(self.node.channels.exists, cid, ctype):
                unknown = lenient("/message/send", "unknown channel", f"channel {cid!r} (type {ctype}) does not "
                                  "exist; the message is stored where no subscriber reads it (as WuKongIM does)")
        cmd = bool(flags & wk.FLAG_SYNC_ONCE) and not subs and ctype != TEMP and cid != ONLINE_CMD_CHANNEL
        target = cmd_channel(cid) if cmd else cid  # a CMD is stored in the channel's ____cmd log
        setting = wk.SETTING_STREAM if int_field(body, "is_stream", 0, lo=0, hi=1) else 0
        sreq = SendRequest(from_uid, target, ctype, payload, cmn, 0, flags, setting, expire, str_field(body, "topic"))
        reason, mid, seq = self.send(sreq, subscribers=subs or None)
        if cmd and seq and reason == wk.REASON_SUCCESS:
            _cmd_rows(self.node, storage_id(ctype, target, from_uid), ctype, seq, from_uid)
        if reason != wk.REASON_SUCCESS:  # WuKongIM drops it silently and answers 200; Skein says why
            msg = lenient("/message/send", f"refused with reason code {reason}", f"to {cid!r} (type {ctype}), "
                          "not stored")
            resp.media = {"status": 200, "data": {"message_id": 0, "client_msg_no": cmn, "message_seq": 0},
                          "msg": msg, "reason_code": reason}
            return
        if subs:
            resp.media = {"status": 200}
            return
        resp.media = {"status": 200, "data": {"message_id": mid, "client_msg_no": cmn, "message_seq": seq}}
        if unknown:
            resp.media["msg"] = unknown


class MessageSendBatch(_Base):
    """Queued: answers once the batch is durably queued (``mesh/im/send_batches.py``)."""

    def on_post(self, req, resp):
        body = body_of(req)
        payload = payload_of(body)
        flags = header_flags(body)
        from_uid = str_field(body, "from_uid", required=True)
        subs = str_list(body, "subscribers")
        if not subs:
            raise falcon.HTTPBadRequest(title="subscribers must list at least one uid")
        ok = [u for u in subs if u and not is_special(u)]  # in order, duplicates kept (as WuKongIM)
        fail_uids = [u for u in subs if not u or is_special(u)]
        try:
            if ok:
                self.node.send_batches.enqueue(from_uid, ok, payload, flags)
        except (SlotUnavailable, SlotCallError, MeshError) as exc:
            raise falcon.HTTPServiceUnavailable(title="retry required", description=f"queue unavailable: {exc}") \
                from None
        resp.media = {"fail_uids": fail_uids, "reason": ["uid contains '@', '#' or '&'" if u else "empty uid"
                                                         for u in fail_uids]}


class MessageSync(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        login_uid = str_field(body, "login_uid", required=True)
        cid, ctype = channel_of(body)
        start = int_field(body, "start_message_seq", 0, lo=0)
        end = int_field(body, "end_message_seq", 0, lo=0)
        limit = int_field(body, "limit", 0, lo=0)
        limit = min(limit or SYNC_LIMIT_DEFAULT, SYNC_LIMIT_MAX)
        pull_mode = int_field(body, "pull_mode", 0, lo=0, hi=1)
        mode = "basic" if str_field(body, "event_summary_mode").strip().lower() == "basic" else "full"
        sid = storage_of(self.node, cid, ctype, login_uid)
        got = self.call(self.node.router.call, sid, wire.MSG_SYNC,
                        {"id": sid, "type": ctype, "start": start, "end": end, "limit": limit, "pull_mode": pull_mode,
                         "summary_mode": mode})
        if not got["exists"] and ctype not in NEED_NO_CHANNEL:
            lenient("/channel/messagesync", "unknown channel", f"channel {cid!r} (type {ctype}) does not exist")
        msgs = got["messages"]
        resp.media = {"start_message_seq": start, "end_message_seq": end, "more": 1 if len(msgs) >= limit else 0,
                      "messages": message_resps(msgs, got.get("event_meta"))}


class MessagesGet(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        if body.get("channel_type", 0) == 0 and isinstance(body.get("channel_id"), str) and body["channel_id"]:
            lenient("/messages", "channel_type 0", f"no channel {body['channel_id']!r} of type 0")
            resp.media = {"start_message_seq": 0, "end_message_seq": 0, "more": 0, "messages": []}
            return
        cid, ctype = channel_of(body)
        sid = storage_of(self.node, cid, ctype, str_field(body, "login_uid"))
        seqs = _int_list(body, "message_seqs")
        ids = _int_list(body, "message_ids")
        cmns = body.get("client_msg_nos") or []
        if not isinstance(cmns, list) or not all(isinstance(x, str) for x in cmns):
            raise falcon.HTTPBadRequest(title="client_msg_nos must be an array of strings")
        got = self.call(self.node.router.call, sid, wire.MSG_LOOKUP,
                        {"id": sid, "type": ctype, "seqs": seqs, "ids": ids, "cmns": cmns})
        if not got["exists"] and ctype != PERSON:
            lenient("/messages", "unknown channel", f"channel {cid!r} (type {ctype}) does not exist")
        resp.media = {"start_message_seq": 0, "end_message_seq": 0, "more": 0,
                      "messages": [message_resp(m) for m in got["messages"]]}


class MessageGet(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body)
        sid = storage_of(self.node, cid, ctype, str_field(body, "login_uid"))
        mid = body.get("message_id")
        cmn = str_field(body, "client_msg_no")
        if mid is not None and (isinstance(mid, bool) or not isinstance(mid, (int, str))):
            raise falcon.HTTPBadRequest(title="message_id must be an integer")
        try:
            ids = [int(mid)] if mid not in (None, "", 0) else []
        except ValueError:
            raise falcon.HTTPBadRequest(title="message_id must be an integer") from None
        if not ids and not cmn:
            resp.media = {"status": 404}
            return
        got = self.call(self.node.router.call, sid, wire.MSG_LOOKUP,
                        {"id": sid, "type": ctype, "ids": ids, "cmns": [cmn] if cmn and not ids else []})
        resp.media = message_resp(got["messages"][0]) if got["messages"] else {"status": 404}


class MaxMessageSeq(_Base):
    def on_get(self, req, resp):
        cid = (req.get_param("channel_id") or "").strip()
        if not cid:
            raise falcon.HTTPBadRequest(title="channel_id is required")
        ctype = req.get_param_as_int("channel_type", default=0, min_value=0, max_value=255)
        if ctype not in range(1, 13):
            raise falcon.HTTPBadRequest(title="channel_type must be 1-12")
        sid = storage_of(self.node, cid, ctype, (req.get_param("login_uid") or "").strip())
        got = self.call(self.node.router.call, sid, wire.MSG_MAX_SEQ, {"id": sid, "type": ctype})
        resp.media = {"message_seq": got["seq"]}


def _cmd_rows(node, sid: str, ctype: int, seq: int, from_uid: str) -> None:
    """Make the recipients' CMD rows before answering, so /message/sync sees the message at once."""
    try:
        node.cmd.ensure_rows(sid, ctype, seq, from_uid)
    except Exception as exc:  # the CMD channel's leader retries after its commit
        log.info("CMD rows of %s not made by the send (%s); the leader makes them", sid, exc)


def _int_list(body: dict, name: str) -> list[int]:
    v = body.get(name) or []
    if not isinstance(v, list):
        raise falcon.HTTPBadRequest(title=f"{name} must be an array of integers")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, str)):
            raise falcon.HTTPBadRequest(title=f"{name} must be an array of integers")
        try:
            n = int(x)
        except ValueError:
            raise falcon.HTTPBadRequest(title=f"{name} must be an array of integers") from None
        if not -2**63 <= n < 2**64:  # beyond what msgpack (the mesh) carries
            raise falcon.HTTPBadRequest(title=f"{name} must be an array of 64-bit integers")
        out.append(n)
    return out[:10000]


def register(app: falcon.App, node) -> None:
    app.add_route("/message/send", MessageSend(node))
    app.add_route("/message/sendbatch", MessageSendBatch(node))
    app.add_route("/channel/messagesync", MessageSync(node))
    app.add_route("/messages", MessagesGet(node))
    app.add_route("/message", MessageGet(node))
    app.add_route("/channel/max_message_seq", MaxMessageSeq(node))
