"""Round-trip properties of the codec: every packet type, every protocol version, any split."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import wkproto as wk

text = st.text(max_size=40)
u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u64 = st.integers(0, 2**64 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
flags = st.integers(0, 15)
blob = st.binary(max_size=200)
versions = st.integers(1, 5)

packets = st.one_of(
    st.builds(wk.Connect, u8, u8, text, text, text, i64, text, flags),
    st.builds(wk.Connack, i64, u8, text, text, u64, u8, st.booleans()),
    st.builds(wk.Send, u8, u32, text, text, text, u8, u32, text, text, blob, flags),
    st.builds(wk.Sendack, i64, u32, u32, u8, flags),
    st.builds(wk.Recv, u8, text, text, text, u8, u32, text, u8, text, u64, i64, u32, i32, text, blob, flags),
    st.builds(wk.Recvack, i64, u32, flags),
    st.builds(wk.Ping, flags),
    st.builds(wk.Pong, flags),
    st.builds(wk.Disconnect, u8, text, flags),
    st.builds(wk.Sub, u8, text, text, u8, u8, text, flags),
    st.builds(wk.Suback, text, text, u8, u8, u8, flags),
    st.builds(wk.Event, text, text, i64, blob, flags),
)


def on_the_wire(p, v: int):
    """``p`` as it decodes at version ``v``: fields the version does not carry are defaults."""
    q = dataclasses.replace(p)
    if q.type in (wk.PING, wk.PONG):
        q.flags = 0  # always the bare type byte, as WuKongIM's encoder writes it
    if q.type == wk.CONNACK:
        q.flags = wk.FLAG_HAS_SERVER_VERSION if q.has_server_version else 0
        if not q.has_server_version:
            q.server_version = 0
        if v < 4:
            q.node_id = 0
    if q.type in (wk.SEND, wk.RECV):
        if not (2 <= v < 5 and q.setting & wk.SETTING_STREAM):
            q.stream_no = ""
            if q.type == wk.RECV:
                q.stream_flag = 0
                q.stream_id = 0
        if v < 3:
            q.expire = 0
        if not q.setting & wk.SETTING_TOPIC:
            q.topic = ""
    return q


@settings(max_examples=600, deadline=None)
@given(packets, versions)
def test_round_trip_every_type_every_version(p, v):
    raw = wk.encode(p, v)
    d = wk.FrameDecoder(v)
    got = d.feed(raw)
    assert d.error is None and d.pending == 0
    assert got == [on_the_wire(p, v)]
    assert raw[0] >> 4 == p.type
    if p.type in (wk.PING, wk.PONG):
        assert len(raw) == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(packets, min_size=1, max_size=8), versions, st.lists(st.integers(1, 50), max_size=30))
def test_any_split_of_a_stream(ps, v, cuts):
    stream = b"".join(wk.encode(p, v) for p in ps)
    expected = [on_the_wire(p, v) for p in ps]
    d = wk.FrameDecoder(v)
    got, pos = [], 0
    for c in cuts:
        got += d.feed(stream[pos:pos + c])
        pos += c
    got += d.feed(stream[pos:])
    assert d.error is None and got == expected and d.pending == 0


def test_frame_cap_is_one_mebibyte():
    limit = wk.MAX_REMAINING_LENGTH
    ok = wk.encode(wk.Send(payload=b"x" * (limit - 100)))
    assert wk.FrameDecoder().feed(ok)[0].payload == b"x" * (limit - 100)
    too_big = bytes([0x30]) + wk.encode_varint(limit + 1)
    d = wk.FrameDecoder()
    assert d.feed(too_big) == [] and d.error is not None and d.error.kind == "oversized"


def test_strings_are_limited_to_int16():
    import pytest

    with pytest.raises(ValueError):
        wk.encode(wk.Disconnect(1, "x" * 40000))
    # a negative length on the wire is an error, not a crash
    d = wk.FrameDecoder()
    d.feed(bytes([0x90, 0x03, 0x01, 0xFF, 0xFF]))
    assert d.error is not None


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("setting", [0, wk.SETTING_TOPIC, wk.SETTING_STREAM])
def test_recv_template_equals_full_encoding(version, setting):
    base = wk.Recv(setting, "", "from-uid", "group-1", 2, 60, "cmn-1", 0, "", 0, 123456789012345678, 42,
                   1732300000, "topic-a", b"", 3)
    tpl = wk.RecvTemplate(base, version)
    for key, payload in [("", b""), ("0123456789abcdef0123456789abcdef", b"x" * 200), ("k", b"y" * 70000)]:
        full = wk.Recv(setting, key, "from-uid", "group-1", 2, 60, "cmn-1", 0, "", 0, 123456789012345678, 42,
                       1732300000, "topic-a", payload, 3)
        assert tpl.frame(key, payload) == wk.encode(full, version)
