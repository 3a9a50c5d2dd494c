"""Conversation endpoints of the WuKongIM v2.2.5 HTTP API.

``POST /conversation/sync`` answers a bare array of conversations (newest message
first), each with ``channel_id`` (the peer's uid for a person chat), ``unread``,
``timestamp``, ``last_msg_seq``, ``readed_to_msg_seq`` and ``recents`` (newest first);
only conversations with at least one message newer than the client already has are
returned, and only when ``msg_count`` > 0. ``/conversations/clearUnread``,
``setUnread`` and ``delete`` move the read and deleted positions and answer
``{"status": 200}``.
"""
from __future__ import annotations

import falcon

from api.channels import channel_of
from api.validate import body_of, check_uid, int_field, str_field
from mesh.im.channel_rules import PERSON, fake_channel_id
from mesh.im.conversations import parse_last_msg_seqs


def _target(body: dict) -> tuple[str, str, int]:
    uid = check_uid(str_field(body, "uid", required=True))
    cid, ctype = channel_of(body)
    return uid, (fake_channel_id(uid, cid) if ctype == PERSON else cid), ctype


class ConversationSync:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        body = body_of(req)
        uid = check_uid(str_field(body, "uid", required=True))
        msg_count = int_field(body, "msg_count", 0, lo=0, hi=10000)
        only_unread = int_field(body, "only_unread", 0, lo=0, hi=1) or int_field(body, "version", 0) > 0
        excl = body.get("exclude_channel_types") or []
        if not isinstance(excl, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in excl):
            raise falcon.HTTPBadRequest(title="exclude_channel_types must be an array of integers")
        page = int_field(body, "page", 0, lo=0)
        page_size = min(int_field(body, "page_size", 100, lo=1) or 100, 500)
        last = parse_last_msg_seqs(str_field(body, "last_msg_seqs", max_len=1_000_000))
        resp.media = self.node.call_or_503(
            lambda: self.node.conversations.sync(uid, msg_count=msg_count, last_msg_seqs=last,
                                                 only_unread=bool(only_unread), exclude_types=set(excl), page=page,
                                                 page_size=page_size))


class ClearUnread:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        uid, sid, ctype = _target(body_of(req))
        self.node.call_or_503(self.node.conversations.clear_unread, uid, sid, ctype)
        resp.media = {"status": 200}


class SetUnread:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        body = body_of(req)
        uid, sid, ctype = _target(body)
        unread = int_field(body, "unread", 0)
        self.node.call_or_503(self.node.conversations.set_unread, uid, sid, ctype, unread)
        resp.media = {"status": 200}


class DeleteConversation:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        uid, sid, ctype = _target(body_of(req))
        self.node.call_or_503(self.node.conversations.delete, uid, sid, ctype)
        resp.media = {"status": 200}


def register(app: falcon.App, node) -> None:
    app.add_route("/conversation/sync", ConversationSync(node))
    app.add_route("/conversations/clearUnread", ClearUnread(node))
    app.add_route("/conversations/setUnread", SetUnread(node))
    app.add_route("/conversations/delete", DeleteConversation(node))
