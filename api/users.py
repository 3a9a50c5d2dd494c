"""`POST /user/token` and `POST /user/device_quit` (WuKongIM v2.2.5 shapes).

`/user/token {uid, token, device_flag, device_level}` stores the token of one device
flag; with master level (1) the uid's connections of that flag are told DISCONNECT 12
and closed 10 s later. `/user/device_quit {uid, device_flag}` (-1 = all) clears the
token and closes those connections 2 s after DISCONNECT 12. Both answer
``{"status": 200}``.
"""
from __future__ import annotations

import falcon

from api.errors import lenient
from api.validate import body_of, check_uid, int_field, str_field
from mesh.im.users import ALL_DEVICE_FLAGS

SYSTEM_UID = "____system"
KICK_TEXT_TOKEN = "账号在其他设备上登录"


class UserToken:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        uid = check_uid(str_field(body, "uid", required=True))
        if uid == SYSTEM_UID:
            raise falcon.HTTPBadRequest(title="uid is reserved for the system")
        token = str_field(body, "token", required=True)
        device_flag = int_field(body, "device_flag", 0, lo=0, hi=255)
        device_level = int_field(body, "device_level", 0, lo=0, hi=1)
        blocked = self.node.call_or_503(self.node.channels.person_block_reason, uid)
        if blocked:
            lenient("/user/token", f"status {blocked}", f"uid {uid!r} is {'banned' if blocked == 19 else 'disbanded'}"
                    "; token not stored")
            resp.media = {"status": blocked}  # banned (19) or disbanded (24) user, as WuKongIM answers
            return
        self.node.call_or_503(self.node.users.set_token, uid, token, device_flag, device_level)
        if device_level == 1:
            self.node.broadcast_kick(uid, [device_flag], 10.0, KICK_TEXT_TOKEN)
        resp.media = {"status": 200}


class DeviceQuit:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = body_of(req)
        uid = check_uid(str_field(body, "uid", required=True))
        device_flag = int_field(body, "device_flag", -1, lo=-1, hi=255)
        flags = list(ALL_DEVICE_FLAGS) if device_flag == -1 else [device_flag]
        self.node.call_or_503(self.node.users.quit, uid, flags)
        self.node.broadcast_kick(uid, flags, 2.0, "device quit")
        resp.media = {"status": 200}


def register(app: falcon.App, node) -> None:
    app.add_route("/user/token", UserToken(node))
    app.add_route("/user/device_quit", DeviceQuit(node))
