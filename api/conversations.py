"""Conversation endpoints of the WuKongIM v2.2.5 HTTP API.

``POST /conversation/sync`` answers a bare array of conversations (newest message
first), each with ``channel_id`` (the peer's uid for a person chat), ``unread``,
``timestamp``, ``last_msg_seq``, ``readed_to_msg_seq`` and ``recents`` (newest first);
only conversations with at least one message newer than the client already has are
returned, and only when ``msg_count`` > 0. ``/conversations/clearUnread``,
``setUnread`` and ``delete`` move the read and deleted positions and answer
``{"status": 200}``.

``/conversation/syncByChannels`` answers the same element shape for the channels asked
(one each, in order, even without a row or messages); ``/conversation/channels`` the
user's chat conversations as ``[{channel_id (stored id), channel_type}]``;
``/conversation/syncMessages`` per stored channel a window of messages and
``user_last_msg_seq`` (WuKongIM v2.2.5 shapes, served from any node).
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


DEFAULT_MSG_COUNT = 15
MAX_CHANNELS = 1000


def _msg_count(body: dict) -> int:
    n = int_field(body, "msg_count", 0, lo=-(2**31), hi=10000)
    return n if n > 0 else DEFAULT_MSG_COUNT


def _channel_list(body: dict, *, with_seq: bool) -> list[tuple]:
    chans = body.get("channels")
    if chans is None:
        chans = []
    if not isinstance(chans, list) or not all(isinstance(c, dict) for c in chans):
        raise falcon.HTTPBadRequest(title="channels must be an array of objects")
    if len(chans) > MAX_CHANNELS:
        raise falcon.HTTPBadRequest(title=f"channels has more than {MAX_CHANNELS} items")
    out = []
    for c in chans:
        cid = str_field(c, "channel_id", required=True)
        ctype = int_field(c, "channel_type", 0, lo=0, hi=255)
        out.append((cid, ctype, int_field(c, "last_msg_seq", 0, lo=0, hi=2**63 - 1)) if with_seq else (cid, ctype))
    return out


class SyncMessages:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        body = body_of(req)
        uid = str_field(body, "uid")
        chans = _channel_list(body, with_seq=True)
        order_by_last = bool(int_field(body, "order_by_last", 0, lo=0, hi=1))
        resp.media = self.node.call_or_503(self.node.conversations.recent_messages, uid, chans, _msg_count(body),
                                           order_by_last) if chans else []


class ConversationChannels:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        uid = str_field(body_of(req), "uid")
        resp.media = self.node.call_or_503(self.node.conversations.channels, uid) if uid else []


class SyncByChannels:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        body = body_of(req)
        uid = str_field(body, "uid").strip()
        if not uid:
            raise falcon.HTTPBadRequest(title="uid cannot be empty")
        chans = _channel_list(body, with_seq=False)
        if not chans:
            raise falcon.HTTPBadRequest(title="channels cannot be empty")
        resp.media = self.node.call_or_503(self.node.conversations.sync_by_channels, uid, chans, _msg_count(body))


def register(app: falcon.App, node) -> None:
    app.add_route("/conversation/sync", ConversationSync(node))
    app.add_route("/conversation/syncMessages", SyncMessages(node))
    app.add_route("/conversation/channels", ConversationChannels(node))
    app.add_route("/conversation/syncByChannels", SyncByChannels(node))
    app.add_route("/conversations/clearUnread", ClearUnread(node))
    app.add_route("/conversations/setUnread", SetUnread(node))
    app.add_route("/conversations/delete", DeleteConversation(node))
