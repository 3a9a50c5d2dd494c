"""``POST /message/sync`` and ``POST /message/syncack``: a user's unread CMD messages (WuKongIM v2.2.5 shapes).

* ``/message/sync {uid, message_seq (ignored), limit (default 200)}`` answers a bare
  JSON array of MessageResp: per CMD channel of the uid, the messages after its read
  position, ascending, up to ``limit`` in all. The window handed out is remembered
  in the uid's slot (replicated).
* ``/message/syncack {uid, last_message_seq}`` (``last_message_seq`` must not be 0 and
  is otherwise unused, as in WuKongIM) moves the read positions to the end of that
  window; answers ``{"status": 200}``.
* ``disableCMDMessageSync``: ``[]`` and ``{"status": 200}`` without work.
"""
from __future__ import annotations

import falcon

from api.validate import body_of, int_field, limit_field, required_str
from mesh.im.cmd import SYNC_LIMIT_DEFAULT
from mesh.im.messages import message_resp

SYNC_LIMIT_MAX = 10000


class CmdSync:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        uid = required_str(body, "uid")
        int_field(body, "message_seq", 0)  # ignored, as in WuKongIM
        limit = limit_field(body, SYNC_LIMIT_DEFAULT, SYNC_LIMIT_MAX)
        if self.node.cfg["disableCMDMessageSync"]:
            resp.media = []
            return
        msgs = self.node.call_or_503(self.node.cmd.sync, uid, limit)
        resp.media = [message_resp(m) for m in msgs]


class CmdSyncAck:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        uid = required_str(body, "uid")
        if int_field(body, "last_message_seq", 0) <= 0:
            raise falcon.HTTPBadRequest(title="last_message_seq must not be 0")
        if not self.node.cfg["disableCMDMessageSync"]:
            self.node.call_or_503(self.node.cmd.ack, uid)
        resp.media = {"status": 200}


def register(app: falcon.App, node) -> None:
    app.add_route("/message/sync", CmdSync(node))
    app.add_route("/message/syncack", CmdSyncAck(node))
