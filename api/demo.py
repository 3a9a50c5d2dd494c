"""The demo chat page (port 5172): static files plus three small calls the page needs.

The page (``api/static/demo/``, at ``/`` and at ``/chatdemo``, WuKongIM's path) runs the
official JS SDK (``wukongimjssdk`` 1.0.4, bundled for browsers at install time into
``api/static/demo/vendor/wkjs.js``) and talks to this node's WebSocket port. The calls:

* ``POST /demo/login {uid}``: registers a fresh token for ``uid`` (device flag 1, web;
  slave level, so tabs do not kick each other) and answers ``{uid, token, wsAddr, apiUrl}``.
* ``POST /demo/group {group_id, members}``: creates the group if needed and adds members.
* ``POST /demo/history {uid, channel_id, channel_type, limit}``: the channel's newest messages.

Anyone who reaches this port can log in as any uid: it is a demo, so turn it off
(``demo.on: false``) or firewall it outside development.
"""
from __future__ import annotations

import secrets

import falcon

from api import errors
from api.static_page import PageIndex, add_page
from api.validate import body_of, int_field, str_field, str_list
from mesh.im.channel_rules import GROUP, PERSON, fake_channel_id, is_special
from mesh.im.messages import message_resp
from mesh.net import wire

WEB_DEVICE = 1
SLAVE_LEVEL = 0


def _id(body: dict, name: str) -> str:
    value = str_field(body, name, required=True, max_len=64).strip()
    if not value or is_special(value) or any(c.isspace() for c in value):
        raise falcon.HTTPBadRequest(title=f"{name} must be non-empty, without spaces, '@', '#' or '&'")
    return value


class DemoLogin:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        uid = _id(body_of(req), "uid")
        token = secrets.token_urlsafe(16)
        self.node.call_or_503(self.node.users.set_token, uid, token, WEB_DEVICE, SLAVE_LEVEL)
        cfg = self.node.cfg
        resp.media = {"uid": uid, "token": token, "wsAddr": cfg["external.wsAddr"], "apiUrl": cfg["external.apiUrl"]}


class DemoGroup:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        gid = _id(body, "group_id")
        members = list(dict.fromkeys(m.strip() for m in str_list(body, "members") if m.strip()))
        if not members or any(is_special(m) for m in members):
            raise falcon.HTTPBadRequest(title="members must list uids without '@', '#' or '&'")
        node = self.node
        if not node.call_or_503(node.channels.exists, gid, GROUP):
            node.call_or_503(node.channels.set_info, gid, GROUP, {})
        node.call_or_503(node.channels.add_subscribers, gid, GROUP, members)
        resp.media = {"group_id": gid, "members": members}


class DemoHistory:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        uid = _id(body, "uid")
        cid = _id(body, "channel_id")
        ctype = int_field(body, "channel_type", PERSON, lo=1, hi=12)
        limit = int_field(body, "limit", 50, lo=1, hi=200)
        sid = fake_channel_id(uid, cid) if ctype == PERSON else cid
        got = self.node.call_or_503(self.node.router.call, sid, wire.MSG_SYNC,
                                    {"id": sid, "type": ctype, "start": 0, "end": 0, "limit": limit, "pull_mode": 0})
        resp.media = {"messages": [message_resp(m) for m in got["messages"]]}


def create_demo_app(node) -> falcon.App:
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    directory = add_page(app, "demo")
    app.add_route("/chatdemo", PageIndex(directory))  # where WuKongIM's nginx example rewrites /login to
    app.add_route("/demo/login", DemoLogin(node))
    app.add_route("/demo/group", DemoGroup(node))
    app.add_route("/demo/history", DemoHistory(node))
    return app
