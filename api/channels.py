"""Channel endpoints of the WuKongIM v2.2.5 HTTP API.

``/channel``, ``/channel/info``, ``/channel/delete``, ``/channel/subscriber_add``,
``/channel/subscriber_remove``, ``/channel/blacklist_add|_set|_remove``,
``/channel/whitelist_add|_set|_remove``, ``/channel/subscriber_remove_all``,
``/channel/blacklist_remove_all`` and ``/channel/whitelist_remove_all`` answer
``{"status": 200}``; ``GET /channel/whitelist`` answers a bare array. Bad input
(missing id, type 0 or unknown, ``@#&`` in an id, subscribers on a person channel) is
a 400 with a message. As in WuKongIM, deleting an unknown channel or removing
subscribers of one answers 200 (nothing is written; logged and counted).
"""
from __future__ import annotations

import zlib

import falcon

from api.errors import lenient
from api.validate import body_of, int_field, str_field, str_list
from mesh.im.channel_rules import AGENT, GROUP, KNOWN_TYPES, PERSON, is_special

INFO_KEYS = ("large", "ban", "disband", "send_ban", "allow_stranger")


def channel_of(body: dict, *, default_type: int | None = None, allow_person: bool = True) -> tuple[str, int]:
    cid = str_field(body, "channel_id", required=True).strip()
    if not cid:
        raise falcon.HTTPBadRequest(title="channel_id is required")
    ctype = int_field(body, "channel_type", 0, lo=0, hi=255)
    if is_special(cid) and not (ctype == AGENT and _agent_pair(cid)):
        raise falcon.HTTPBadRequest(title="channel_id must not contain '@', '#' or '&'")
    if ctype == 0 and default_type is not None:
        ctype = default_type
    if ctype not in KNOWN_TYPES:
        raise falcon.HTTPBadRequest(title=f"channel_type {ctype} is not a channel type (1-12)")
    if ctype == PERSON and not allow_person:
        raise falcon.HTTPBadRequest(title="person channels do not take subscribers")
    return cid, ctype


def _agent_pair(cid: str) -> bool:
    """``<user>@<agent>``: an agent chat's stored id, accepted for type 11."""
    a, _, b = cid.partition("@")
    return bool(a and b) and not is_special(a) and not is_special(b)


def uids_of(body: dict, name: str, *, required: bool) -> list[str]:
    uids = [u.strip() for u in str_list(body, name)]
    uids = [u for u in uids if u]
    if required and not uids:
        raise falcon.HTTPBadRequest(title=f"{name} must list at least one uid")
    bad = [u for u in uids if is_special(u)]
    if bad:
        raise falcon.HTTPBadRequest(title=f"{name} contains ids with '@', '#' or '&': {bad[:3]}")
    return list(dict.fromkeys(uids))


class _Base:
    def __init__(self, node) -> None:
        self.node = node

    def call(self, fn, *args):
        return self.node.call_or_503(fn, *args)

    def known(self, route: str, cid: str, ctype: int) -> bool:
        """Whether the channel exists; if not, say so (WuKongIM answers 200 all the same)."""
        if self.call(self.node.channels.exists, cid, ctype):
            return True
        lenient(route, "unknown channel", f"channel {cid!r} (type {ctype}) does not exist; nothing changed")
        return False


class ChannelCreate(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body)
        subs = uids_of(body, "subscribers", required=False)
        if ctype == PERSON and subs:
            raise falcon.HTTPBadRequest(title="person channels do not take subscribers")
        info = {k: int_field(body, k, 0, lo=0, hi=1) for k in INFO_KEYS}
        reset = int_field(body, "reset", 0, lo=0, hi=1)
        self.call(self.node.channels.set_info, cid, ctype, info)
        if subs or reset:
            self.call(self.node.channels.add_subscribers, cid, ctype, subs, bool(reset))
        resp.media = {"status": 200}


class ChannelInfo(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body)
        info = {k: int_field(body, k, 0, lo=0, hi=1) for k in INFO_KEYS}
        self.call(self.node.channels.set_info, cid, ctype, info)
        resp.media = {"status": 200}


class ChannelDelete(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body, allow_person=False)
        if self.known("/channel/delete", cid, ctype):
            self.call(self.node.channels.set_info, cid, ctype, {"disband": 1})
        resp.media = {"status": 200}


class SubscriberAdd(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body, default_type=GROUP, allow_person=False)
        if int_field(body, "temp_subscriber", 0, lo=0, hi=1):
            raise falcon.HTTPBadRequest(title="temp_subscriber is no longer supported")
        subs = uids_of(body, "subscribers", required=True)
        reset = int_field(body, "reset", 0, lo=0, hi=1)
        self.call(self.node.channels.add_subscribers, cid, ctype, subs, bool(reset))
        resp.media = {"status": 200}


class SubscriberRemove(_Base):
    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body, allow_person=False)
        subs = uids_of(body, "subscribers", required=True)
        if self.known("/channel/subscriber_remove", cid, ctype):
            self.call(self.node.channels.remove_subscribers, cid, ctype, subs)
        resp.media = {"status": 200}


class SubscriberRemoveAll(_Base):
    """Every subscriber off the channel; conversations are left alone (as in WuKongIM)."""

    def on_post(self, req, resp):
        cid, ctype = channel_of(body_of(req), allow_person=False)
        self.call(self.node.channels.remove_all_subscribers, cid, ctype)
        resp.media = {"status": 200}


class ListChange(_Base):
    def __init__(self, node, which: str, mode: str) -> None:
        super().__init__(node)
        self.which = which
        self.mode = mode

    def on_post(self, req, resp):
        body = body_of(req)
        cid, ctype = channel_of(body)
        uids = uids_of(body, "uids", required=self.mode in ("add", "remove"))
        self.call(self.node.channels.list_change, cid, ctype, self.which, self.mode, uids)
        resp.media = {"status": 200}


class ListRemoveAll(_Base):
    """Empty the deny or allow list (an empty allow list of a group is not enforced)."""

    def __init__(self, node, which: str) -> None:
        super().__init__(node)
        self.which = which

    def on_post(self, req, resp):
        cid, ctype = channel_of(body_of(req))
        self.call(self.node.channels.list_change, cid, ctype, self.which, "clear", [])
        resp.media = {"status": 200}


class WhitelistGet(_Base):
    def on_get(self, req, resp):
        cid = (req.get_param("channel_id") or "").strip()
        if not cid:
            raise falcon.HTTPBadRequest(title="channel_id is required")
        ctype = req.get_param_as_int("channel_type", default=GROUP, min_value=1, max_value=12)
        got = self.call(self.node.channels.get, cid, ctype)
        allow = got["allow"] if got else []
        resp.media = [{"id": zlib.crc32(u.encode()), "uid": u} for u in allow]


def register(app: falcon.App, node) -> None:
    app.add_route("/channel", ChannelCreate(node))
    app.add_route("/channel/info", ChannelInfo(node))
    app.add_route("/channel/delete", ChannelDelete(node))
    app.add_route("/channel/subscriber_add", SubscriberAdd(node))
    app.add_route("/channel/subscriber_remove", SubscriberRemove(node))
    app.add_route("/channel/subscriber_remove_all", SubscriberRemoveAll(node))
    for which, name in (("deny", "blacklist"), ("allow", "whitelist")):
        for mode in ("add", "set", "remove"):
            app.add_route(f"/channel/{name}_{mode}", ListChange(node, which, mode))
        app.add_route(f"/channel/{name}_remove_all", ListRemoveAll(node, which))
    app.add_route("/channel/whitelist", WhitelistGet(node))
