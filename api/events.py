"""``POST /message/event`` and ``POST /message/eventsync`` (WuKongIM v2.2.5 shapes, see ``mesh.im.events``).

* ``/message/event {channel_id, channel_type, from_uid?, message_id?, client_msg_no, event_id,
  event_type, event_key?, visibility?, occurred_at?, payload?, headers?}`` answers
  ``{"status":200,"data":{"client_msg_no","event_key","event_id","msg_event_seq","stream_status",
  "channel_id","channel_type","from_uid"}}``; a delta to a key already terminal is 400
  ``stream closed``. The stored channel: person ``fake(channel_id, from_uid)``, agent
  ``<from_uid>@<channel_id>``, others ``channel_id``.
* ``/message/eventsync {channel_id, channel_type, from_uid?, client_msg_no, event_key?,
  from_msg_event_seq?, limit? (default 200, max 2000), include_private?}`` answers
  ``{"status":200,"data":{"client_msg_no","from_msg_event_seq","next_msg_event_seq","more",
  "events":[...],"filtered_by_event_key"}}`` (the projection: one row per event key).
"""
from __future__ import annotations

import json

import falcon

from api.validate import body_of, int_field, limit_field, required_str, str_field
from mesh.im.channel_rules import AGENT, PERSON, SYSTEM_UID, agent_channel_id, fake_channel_id
from mesh.net import wire

INT64_MAX = 2**63 - 1


def _channel(body: dict) -> tuple[str, int]:
    return required_str(body, "channel_id"), int_field(body, "channel_type", 0, lo=0, hi=255)


def _required(body: dict, name: str) -> str:
    return required_str(body, name, max_len=256)


def _storage(cid: str, ctype: int, from_uid: str) -> str:
    if ctype == PERSON and from_uid and "@" not in cid:
        return fake_channel_id(cid, from_uid)
    if ctype == AGENT and from_uid:
        return agent_channel_id(from_uid, cid)
    return cid


class MessageEvent:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        cid, ctype = _channel(body)
        cmn = _required(body, "client_msg_no")
        event_id = _required(body, "event_id")
        event_type = _required(body, "event_type")
        from_uid = str_field(body, "from_uid").strip()
        mid = int_field(body, "message_id", 0, lo=0, hi=INT64_MAX)
        occurred = int_field(body, "occurred_at", 0, lo=0, hi=INT64_MAX)
        sid = _storage(cid, ctype, from_uid or (SYSTEM_UID if ctype == PERSON else ""))
        args = {"sid": sid, "type": ctype, "channel_id": cid, "client_msg_no": cmn, "event_id": event_id,
                "event_type": event_type, "event_key": str_field(body, "event_key").strip(),
                "visibility": str_field(body, "visibility").strip(), "occurred_at": occurred,
                "from_uid": from_uid, "message_id": mid,
                "payload": None if body.get("payload") is None else json.dumps(body["payload"])}  # any JSON, as text
        got = self.node.call_or_503(self.node.router.call, sid, wire.EVT_APPEND, args)
        if "error" in got:
            raise falcon.HTTPBadRequest(title=got["error"])
        resp.media = {"status": 200, "data": got}


class MessageEventSync:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        cid, ctype = _channel(body)
        cmn = _required(body, "client_msg_no")
        limit = limit_field(body, 200, 2000)
        from_uid = str_field(body, "from_uid").strip()
        sid = fake_channel_id(cid, from_uid) if ctype == PERSON and from_uid and "@" not in cid else cid
        got = self.node.call_or_503(self.node.router.call, sid, wire.EVT_SYNC, {
            "sid": sid, "type": ctype, "client_msg_no": cmn, "event_key": str_field(body, "event_key").strip(),
            "from": int_field(body, "from_msg_event_seq", 0, lo=0, hi=INT64_MAX), "limit": limit,
            "include_private": int_field(body, "include_private", 0, lo=0, hi=1)})
        resp.media = {"status": 200, "data": got}


def register(app: falcon.App, node) -> None:
    app.add_route("/message/event", MessageEvent(node))
    app.add_route("/message/eventsync", MessageEventSync(node))
