"""Pure rules: person-channel ids, send permission, sync ranges, unread counts, snowflake, state machine."""
from __future__ import annotations

import zlib

import msgpack
import pytest

from gateway import wkproto as wk
from mesh.im.channel_rules import (
    AGENT,
    GROUP,
    INFO,
    PERSON,
    VISITORS,
    ChannelView,
    PersonFlags,
    check_send,
    fake_channel_id,
    person_pair,
    person_peer,
)
from mesh.im.conversations import build_sync, parse_last_msg_seqs
from mesh.im.history import sync_range
from mesh.im.slot_state import SlotState
from mesh.im.snowflake import EPOCH_MS, Snowflake


def test_fake_channel_id_follows_crc32_order():
    a, b = "u1", "u2"
    fid = fake_channel_id(a, b)
    assert fid == fake_channel_id(b, a) or zlib.crc32(b"u1") == zlib.crc32(b"u2")
    big, small = (a, b) if zlib.crc32(a.encode()) > zlib.crc32(b.encode()) else (b, a)
    assert fid == f"{big}@{small}"
    assert person_peer(fid, "u1") == "u2" and person_peer(fid, "u2") == "u1"
    assert sorted(person_pair(fid)) == ["u1", "u2"] and person_pair("x@x") == ["x"]


GROUP_VIEW = ChannelView(True, 0, 0, {"a", "b", "c"}, {"c"}, set())


@pytest.mark.parametrize("kw,expect", [
    ({}, 1),
    ({"from_uid": "z"}, wk.REASON_SUBSCRIBER_NOT_EXIST),
    ({"from_uid": "c"}, wk.REASON_IN_BLACKLIST),
    ({"channel": ChannelView(True, 0, 0, {"a", "b"}, set(), {"b"})}, wk.REASON_NOT_IN_WHITELIST),
    ({"channel": ChannelView(True, 1, 0, {"a"})}, wk.REASON_BAN),
    ({"channel": ChannelView(True, 0, 1, {"a"})}, wk.REASON_DISBAND),
    ({"channel": None}, wk.REASON_SUBSCRIBER_NOT_EXIST),
    ({"sender": PersonFlags(send_ban=1)}, wk.REASON_SEND_BAN),
    ({"sender": PersonFlags(send_ban=1), "system": True}, 1),
    ({"channel": ChannelView(True, 1, 0, {"a"}), "system": True}, wk.REASON_BAN),
    ({"channel_type": 77}, wk.REASON_NOT_SUPPORT_CHANNEL_TYPE),
    ({"channel_type": INFO, "channel": ChannelView(True, 1, 1)}, 1),
    ({"channel_type": VISITORS, "channel_id": "a", "channel": None}, 1),
    ({"channel_type": AGENT, "channel_id": "a@bot", "channel": None}, 1),
])
def test_group_permission_matrix(kw, expect):
    args = {"channel_type": GROUP, "channel_id": "g", "from_uid": "a", "channel": GROUP_VIEW, "sender": None,
            "receiver": None}
    args.update(kw)
    system = args.pop("system", False)
    assert check_send(args["channel_type"], args["channel_id"], args["from_uid"], args["channel"], args["sender"],
                      args["receiver"], system=system) == expect


def test_person_permission():
    r = PersonFlags(deny=frozenset({"enemy"}), allow=frozenset({"friend"}))
    assert check_send(PERSON, "owner", "enemy", None, None, r) == wk.REASON_IN_BLACKLIST
    assert check_send(PERSON, "owner", "other", None, None, r) == 1  # whitelist off by default
    assert check_send(PERSON, "owner", "other", None, None, r, person_whitelist=True) == wk.REASON_NOT_IN_WHITELIST
    assert check_send(PERSON, "owner", "friend", None, None, r, person_whitelist=True) == 1
    assert check_send(PERSON, "owner", "x", None, None, PersonFlags(ban=1)) == 1  # ban blocks login, not messages
    assert check_send(PERSON, "owner", "x", ChannelView(ban=1), None, None) == wk.REASON_BAN


@pytest.mark.parametrize("start,end,limit,mode,last,expect", [
    (0, 0, 10, 0, 25, (16, 25)), (0, 0, 10, 1, 5, (1, 5)), (5, 0, 3, 1, 25, (5, 7)), (5, 8, 10, 1, 25, (5, 7)),
    (10, 0, 3, 0, 25, (8, 10)), (10, 7, 10, 0, 25, (8, 10)), (3, 9, 10, 0, 25, (1, 0)), (40, 0, 5, 0, 25, (21, 25)),
    (0, 0, 0, 0, 25, (1, 0)), (0, 0, 5, 0, 0, (1, 0)),
])
def test_sync_ranges(start, end, limit, mode, last, expect):
    assert sync_range(start, end, limit, mode, last) == expect


def m(seq, frm, ts=100):
    return ["g", 2, seq, 1000 + seq, frm, f"c{seq}", ts + seq, 2, 0, 0, "", b"x"]


def test_build_sync_unread_rules():
    rows = [["g", 2, 3, 0, 0, 0], ["h", 2, 0, 0, 0, 0], ["u1@me", 1, 0, 0, 0, 0]]
    summaries = {("g", 2): (8, [m(8, "o"), m(7, "me")], 7), ("h", 2): (2, [m(2, "me", 500)], 2),
                 ("u1@me", 1): (0, [], 0)}
    out = build_sync("me", rows, summaries, msg_count=2, last_msg_seqs={}, only_unread=False, exclude_types=set(),
                     page=0, page_size=100)
    assert [c["channel_id"] for c in out] == ["h", "g"]  # newest message first; the empty one is left out
    h, g = out
    assert h["unread"] == 0 and h["readed_to_msg_seq"] == 2  # the newest message is our own
    assert g["unread"] == 1 and g["readed_to_msg_seq"] == 7  # read up to our own last message
    assert g["recents"][0]["message_seq"] == 8 and g["version"] == g["timestamp"] * 10**9
    assert parse_last_msg_seqs("g:2:5|bad|h:x:1|u:1:3") == {("g", 2): 5, ("u", 1): 3}


def test_snowflake_layout_and_order():
    clock = [1700000000.0]
    s = Snowflake(5, clock=lambda: clock[0])
    ids = [s.next() for _ in range(5000)]  # more than 4096 in one millisecond
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert all(Snowflake.node_of(i) == 5 for i in ids)
    assert int(Snowflake.time_of(ids[0]) * 1000) == 1700000000000
    assert ids[0] >> 22 == 1700000000000 - EPOCH_MS


def test_state_machine_apply_and_snapshot_round_trip():
    st = SlotState(3)
    st.apply_op(1, "user.token", {"uid": "u", "device_flag": 1, "token": "t", "device_level": 1})
    st.apply_op(2, "channel.info", {"id": "g", "type": 2, "info": {"ban": 0, "large": 1}})
    added = st.apply_op(3, "channel.subscribers", {"id": "g", "type": 2, "add": ["a", "b"]})
    assert added == ["a", "b"]
    st.apply_op(4, "channel.list", {"id": "g", "type": 2, "list": "deny", "mode": "add", "uids": ["b"]})
    st.apply_msg(5, ["g", 2, 1, 99, "a", "c1", 1700000000, 2, 0, 0, "", b"hi"])
    st.apply_op(6, "conv.set", {"uid": "a", "id": "g", "type": 2, "read_seq": 1, "now": 5})
    assert not st.apply_op(7, "conv.set", {"uid": "a", "id": "g", "type": 2, "read_seq": 0, "raise_only": True,
                                           "now": 6})
    snap = msgpack.unpackb(msgpack.packb(st.to_snapshot(), use_bin_type=True), raw=False, strict_map_key=False)
    back = SlotState.from_snapshot(3, snap)
    assert back.to_snapshot() == st.to_snapshot()
    assert back.token("u", 1) == ("t", 1) and back.seen("g", 2, "a", "c1") == (99, 1, 1700000000)
    ch = back.channel("g", 2)
    assert ch.subscribers == {"a", "b"} and ch.deny == {"b"} and ch.last_seq == 1 and ch.senders == {"a": 1}
    assert back.convs["a"][("g", 2)].read_seq == 1 and back.applied == 7


def test_build_sync_recents_carry_event_meta_of_stream_messages():
    stream = m(2, "o")
    stream[8] = 0x02  # Setting.Stream, client_msg_no "c2"
    meta = {"event_meta": {"has_events": True}, "event_sync_hint": {"client_msg_no": "c2", "from_msg_event_seq": 0}}
    rows = [["g", 2, 0, 0, 0, 0]]
    summaries = {("g", 2): (2, [stream, m(1, "o")], 0, {"c2": meta})}
    [conv] = build_sync("me", rows, summaries, msg_count=2, last_msg_seqs={}, only_unread=False, exclude_types=set(),
                        page=0, page_size=100)
    assert conv["recents"][0]["event_meta"] == {"has_events": True} and "event_meta" not in conv["recents"][1]
    assert conv["recents"][0]["event_sync_hint"]["client_msg_no"] == "c2"
