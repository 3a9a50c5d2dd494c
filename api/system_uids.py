"""System accounts: ``POST /user/systemuids_add``, ``POST /user/systemuids_remove``, ``GET /user/systemuids``.

``{"uids": [...]}`` adds or removes; both answer ``{"status": 200}`` once the change is
replicated in its slot and this node's copy has it (the other nodes get it by a mesh
broadcast, see ``mesh.im.system_uids``); an empty list stores nothing. The GET answers
the bare array of stored uids, without the built-in ``____system``, and ``null`` when
there are none (WuKongIM v2.2.5's shapes). WuKongIM's ``*_to_cache`` routes are not
needed: no node asks another over HTTP.
"""
from __future__ import annotations

import falcon

from api.validate import body_of, str_list


class _Change:
    add = True

    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        uids = [u for u in str_list(body_of(req), "uids", max_items=10000) if u]
        if uids:
            su = self.node.system_uids
            self.node.call_or_503(su.change, uids if self.add else [], [] if self.add else uids)
        resp.media = {"status": 200}


class SystemUidsAdd(_Change):
    add = True


class SystemUidsRemove(_Change):
    add = False


class SystemUidsGet:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        uids = self.node.call_or_503(self.node.system_uids.stored)
        resp.media = uids or None


def register(app: falcon.App, node) -> None:
    app.add_route("/user/systemuids_add", SystemUidsAdd(node))
    app.add_route("/user/systemuids_remove", SystemUidsRemove(node))
    app.add_route("/user/systemuids", SystemUidsGet(node))
