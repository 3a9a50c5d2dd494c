"""Single-message reads of the WuKongIM v2.2.5 HTTP API: ``GET /channel/last_message``
and ``GET /message/byclientmsgno``.

Both are served by the channel's slot leader (from any node) and answer a bare
MessageResp, or ``200 {"status": 404}`` when there is nothing (an unknown channel, no
message, no such ``client_msg_no``), as WuKongIM does.

* ``/channel/last_message?login_uid&channel_id&channel_type``: the highest seq of the
  channel; a person chat is addressed with the peer's uid plus ``login_uid``.
* ``/message/byclientmsgno?channel_id&channel_type&client_msg_no``: no person
  conversion, callers pass the stored id (``a@b`` for a person chat).
"""
from __future__ import annotations

import falcon

from api.errors import lenient
from mesh.im.channel_rules import PERSON, fake_channel_id
from mesh.im.messages import message_resp
from mesh.net import wire

NOT_FOUND = {"status": 404}


def _param(req: falcon.Request, name: str) -> str:
    v = (req.get_param(name) or "").strip()
    if not v:
        raise falcon.HTTPBadRequest(title=f"{name} is required")
    return v


def _ctype(req: falcon.Request) -> int:
    ctype = req.get_param_as_int("channel_type", default=0, min_value=0, max_value=255)
    if ctype not in range(1, 13):
        raise falcon.HTTPBadRequest(title="channel_type must be 1-12")
    return ctype


class LastMessage:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp):
        cid = _param(req, "channel_id")
        ctype = _ctype(req)
        sid = cid
        if ctype == PERSON:
            sid = fake_channel_id(_param(req, "login_uid"), cid)
        got = self.node.call_or_503(self.node.router.call, sid, wire.MSG_SYNC,
                                    {"id": sid, "type": ctype, "start": 0, "end": 0, "limit": 1, "pull_mode": 0})
        if not got["messages"]:
            lenient("/channel/last_message", "not found", f"channel {sid!r} (type {ctype}) has no message")
            resp.media = NOT_FOUND
            return
        resp.media = message_resp(got["messages"][-1])


class ByClientMsgNo:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp):
        sid = _param(req, "channel_id")
        ctype = _ctype(req)
        cmn = _param(req, "client_msg_no")
        got = self.node.call_or_503(self.node.router.call, sid, wire.MSG_LOOKUP,
                                    {"id": sid, "type": ctype, "cmns": [cmn]})
        if not got["messages"]:
            lenient("/message/byclientmsgno", "not found", f"no client_msg_no {cmn!r} in {sid!r} (type {ctype})")
            resp.media = NOT_FOUND
            return
        resp.media = message_resp(got["messages"][0])


def register(app: falcon.App, node) -> None:
    app.add_route("/channel/last_message", LastMessage(node))
    app.add_route("/message/byclientmsgno", ByClientMsgNo(node))
