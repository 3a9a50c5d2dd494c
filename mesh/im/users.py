"""Users and devices: tokens per (uid, device flag), device levels, and the CONNECT check.

Tokens live in the slot of the uid (``crc32(uid) % slotCount``), on its leader. Any
node sets or checks them through the slot router. ``TokenAuthenticator`` is the
gateway's ``Authenticator``; ``connect_verdict`` is its rule (pure): with ``tokenAuthOn``
the stored token for (uid, device flag) must equal the CONNECT's token exactly and the
device level is the stored one; without it (WuKongIM's default) any token is accepted
and every connection is slave level, so no login kicks another and ``msg.offline``
fires for every recipient, as in WuKongIM. The ban of the uid's own person channel
refuses the login (reason 19) either way.
"""
from __future__ import annotations

import logging

from gateway import wkproto as wk
from gateway.ports import DEVICE_LEVEL_MASTER, DEVICE_LEVEL_SLAVE, AuthResult
from mesh.net import wire
from mesh.slots.router import SlotRouter, SlotUnavailable

log = logging.getLogger("mesh.im.users")

ALL_DEVICE_FLAGS = (0, 1, 2)


def register(service) -> None:
    service.register(wire.USER_SET_TOKEN, _set_token)
    service.register(wire.USER_GET_TOKEN, _get_token)
    service.register(wire.USER_QUIT, _quit)


def _set_token(svc, slot: int, a: dict) -> None:
    svc.propose(slot, wire.OP_USER_TOKEN, {"uid": a["uid"], "device_flag": a["device_flag"], "token": a["token"],
                                     "device_level": a["device_level"]})


def _get_token(svc, slot: int, a: dict):
    """[token, device level, ban, disband] (ban/disband of the user's own person channel)."""
    state = svc.state(slot)
    t = state.token(a["uid"], int(a["device_flag"]))
    ch = state.channel(a["uid"], 1)
    ban, disband = (ch.flag("ban"), ch.flag("disband")) if ch else (0, 0)
    return [t[0], t[1], ban, disband] if t else [None, 0, ban, disband]


def _quit(svc, slot: int, a: dict) -> None:
    svc.propose(slot, wire.OP_USER_QUIT, {"uid": a["uid"], "device_flags": list(a["device_flags"])})


class Users:
    def __init__(self, router: SlotRouter) -> None:
        self.router = router

    def set_token(self, uid: str, token: str, device_flag: int, device_level: int) -> None:
        self.router.call(uid, wire.USER_SET_TOKEN, {"uid": uid, "token": token, "device_flag": device_flag,
                                                 "device_level": device_level})

    def get_token(self, uid: str, device_flag: int) -> tuple[str | None, int, int, int]:
        """(token or None, device level, ban, disband) for one device flag of ``uid``."""
        t = self.router.call(uid, wire.USER_GET_TOKEN, {"uid": uid, "device_flag": device_flag})
        return (t[0], t[1], t[2], t[3])

    def quit(self, uid: str, device_flags) -> None:
        self.router.call(uid, wire.USER_QUIT, {"uid": uid, "device_flags": list(device_flags)})


def connect_verdict(token_auth_on: bool, token: str, stored: tuple[str | None, int, int, int]) -> AuthResult:
    """The CONNECT decision from the uid's stored (token, device level, ban, disband) of its device flag."""
    stored_token, level, ban, _disband = stored
    if token_auth_on and (not stored_token or stored_token != token):
        return AuthResult(wk.REASON_AUTH_FAIL)
    if ban:
        return AuthResult(wk.REASON_BAN)  # a banned user cannot log in (WuKongIM v2.2.5), token check or not
    if not token_auth_on:
        return AuthResult(wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE)
    return AuthResult(wk.REASON_SUCCESS, level if level in (0, 1) else DEVICE_LEVEL_MASTER)


class TokenAuthenticator:
    def __init__(self, users: Users, token_auth_on: bool = True) -> None:
        self.users = users
        self.token_auth_on = token_auth_on

    def authenticate(self, uid: str, device_flag: int, token: str) -> AuthResult:
        try:
            stored = self.users.get_token(uid, device_flag)
        except SlotUnavailable as exc:
            log.warning("token check for uid=%s unavailable: %s", uid, exc)
            return AuthResult(wk.REASON_SYSTEM_ERROR)
        return connect_verdict(self.token_auth_on, token, stored)
