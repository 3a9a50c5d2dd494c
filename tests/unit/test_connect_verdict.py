"""The CONNECT rule (mesh.im.users.connect_verdict): tokenAuthOn on and off, ban, device level."""
from __future__ import annotations

import pytest

from gateway import wkproto as wk
from gateway.ports import DEVICE_LEVEL_MASTER, DEVICE_LEVEL_SLAVE
from mesh.im.users import connect_verdict

NONE = (None, 0, 0, 0)  # no token stored for this device flag, not banned


@pytest.mark.parametrize("on,token,stored,reason,level", [
    # tokenAuthOn true (Skein's default): the stored token must match; the level is the stored one
    (True, "t", ("t", 1, 0, 0), wk.REASON_SUCCESS, DEVICE_LEVEL_MASTER),
    (True, "t", ("t", 0, 0, 0), wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE),
    (True, "t", ("t", 7, 0, 0), wk.REASON_SUCCESS, DEVICE_LEVEL_MASTER),
    (True, "x", ("t", 1, 0, 0), wk.REASON_AUTH_FAIL, None),
    (True, "", ("t", 1, 0, 0), wk.REASON_AUTH_FAIL, None),
    (True, "", NONE, wk.REASON_AUTH_FAIL, None),
    (True, "t", NONE, wk.REASON_AUTH_FAIL, None),
    (True, "t", ("t", 1, 1, 0), wk.REASON_BAN, None),
    (True, "x", ("t", 1, 1, 0), wk.REASON_AUTH_FAIL, None),  # a wrong token is refused before the ban shows
    # tokenAuthOn false (WuKongIM's default): any token, always slave level, the ban still refuses
    (False, "", NONE, wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE),
    (False, "anything", NONE, wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE),
    (False, "x", ("t", 1, 0, 0), wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE),
    (False, "t", ("t", 1, 0, 0), wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE),
    (False, "", (None, 0, 1, 0), wk.REASON_BAN, None),
    (False, "t", ("t", 1, 1, 0), wk.REASON_BAN, None),
    (False, "", (None, 0, 0, 1), wk.REASON_SUCCESS, DEVICE_LEVEL_SLAVE),  # disband does not block a login
])
def test_connect_verdict(on, token, stored, reason, level):
    got = connect_verdict(on, token, stored)
    assert got.reason == reason
    if level is not None:
        assert got.device_level == level
