"""The session state machine with a real Gateway and test doubles around it."""
from __future__ import annotations

import base64
import json
import time

import pytest

from gateway import wkproto as wk
from gateway.ports import Delivery
from gateway.session import AUTHED, CLOSED
from gateway.session_crypto import SessionCipher, client_key_pair, derive_aes_key
from mesh.base import metrics
from tests.support.gateway_harness import FakeTransport, make_gateway


def rejected(kind):
    return metrics.gw_rejected.labels(kind)._value.get()


class Client:
    """Just enough of a client to drive one session."""

    def __init__(self, gw, uid="u1", token="t1", version=5, kind="tcp", device_id="d1", device_flag=1):
        self.t = FakeTransport(kind)
        self.s = gw.open(self.t)
        self.uid, self.token, self.version = uid, token, version
        self.device_id, self.device_flag = device_id, device_flag
        self.cipher = None
        self.seq = 0

    def connect(self, client_key=True):
        priv, pub = client_key_pair()
        self.s.feed(wk.encode(wk.Connect(self.version, self.device_flag, self.device_id, self.uid, self.token,
                                         int(time.time() * 1000), pub if client_key else "")))
        ack = self.t.packets(self.version)[0]
        if ack.reason_code == 1:
            self.cipher = SessionCipher.from_salt(derive_aes_key(priv, ack.server_key), ack.salt)
        return ack

    def send(self, channel_id, payload, channel_type=1, flags=wk.FLAG_RED_DOT, bad_key=False):
        self.seq += 1
        body = self.cipher.encrypt(payload)
        key = self.cipher.send_msg_key(self.seq, f"c{self.seq}", channel_id, channel_type, body)
        if bad_key:
            key = "0" * 32
        self.s.feed(wk.encode(wk.Send(0, self.seq, f"c{self.seq}", "", channel_id, channel_type, 0, key, "", body,
                                      flags), self.version))
        return self.t.packets(self.version)[-1]


@pytest.fixture
def gw():
    g, tokens, sink, published = make_gateway(**{"conn.partialFrameTimeout": "1s", "messageRetry.interval": "10s",
                                                 "messageRetry.maxCount": 2})
    tokens.tokens[("u1", 1)] = ("t1", 1)
    tokens.tokens[("u2", 1)] = ("t2", 1)
    tokens.tokens[("u1", 0)] = ("t1", 0)
    g.sink_ = sink
    g.published_ = published
    return g


def test_connect_v5_encrypted_send_roundtrip(gw):
    c = Client(gw)
    ack = c.connect()
    assert ack.reason_code == 1 and ack.has_server_version and ack.server_version == 5 and ack.node_id == 7
    assert len(ack.salt) == 16 and ack.server_key
    assert c.s.state == AUTHED and gw.by_uid["u1"] == [c.s]
    sendack = c.send("u2", b'{"type":1,"content":"hi"}')
    assert sendack.type == wk.SENDACK and sendack.reason_code == 1 and sendack.flags == wk.FLAG_RED_DOT
    req = gw.sink_.requests[-1]
    assert req.payload == b'{"type":1,"content":"hi"}' and req.channel_id == "u2" and req.from_uid == "u1"
    assert req.conn == (7, c.s.conn_id) and req.flags == wk.FLAG_RED_DOT
    assert ("gw.login", ["u1", 1, "d1", 1, 7, c.s.conn_id]) in gw.published_


def test_bad_msg_key_and_bad_payload_get_reason_9(gw):
    c = Client(gw)
    c.connect()
    assert c.send("u2", b"x", bad_key=True).reason_code == wk.REASON_PAYLOAD_DECODE_ERROR
    body = b"not base64!!"
    key = c.cipher.send_msg_key(9, "c9", "u2", 1, body)
    c.s.feed(wk.encode(wk.Send(0, 9, "c9", "", "u2", 1, 0, key, "", body)))
    assert c.t.packets()[-1].reason_code == wk.REASON_PAYLOAD_DECODE_ERROR
    assert len(gw.sink_.requests) == 0 and c.s.state == AUTHED


def test_empty_channel_id_reason_16(gw):
    c = Client(gw)
    c.connect()
    assert c.send("", b"x").reason_code == wk.REASON_CHANNEL_ID_ERROR


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_older_versions(gw, version):
    c = Client(gw, version=version)
    ack = c.connect()
    assert ack.reason_code == 1
    assert ack.has_server_version == (version > 3)
    assert c.send("u2", b"hello").reason_code == 1


def test_wrong_token_missing_token_and_special_uid_get_connack_2(gw):
    for uid, token in [("u1", "bad"), ("u1", ""), ("u@1", "t1"), ("a#b", "x"), ("", "t1"), ("nobody", "t")]:
        c = Client(gw, uid=uid, token=token)
        ack = c.connect()
        assert ack.reason_code == wk.REASON_AUTH_FAIL and not ack.has_server_version
        assert c.s.state == CLOSED and c.t.closed


def test_missing_client_key_reason_21(gw):
    c = Client(gw)
    assert c.connect(client_key=False).reason_code == wk.REASON_CLIENT_KEY_IS_EMPTY


def test_ping_pong_and_coalesced_frames(gw):
    c = Client(gw)
    c.connect()
    c.s.feed(b"\x70\x70\x70")
    assert [p.type for p in c.t.packets()[1:]] == [wk.PONG] * 3


def test_any_split_of_the_stream(gw):
    c = Client(gw)
    priv, pub = client_key_pair()
    raw = wk.encode(wk.Connect(5, 1, "d1", "u1", "t1", 1, pub)) + b"\x70"
    for b in raw:
        c.s.feed(bytes([b]))
    assert [p.type for p in c.t.packets()] == [wk.CONNACK, wk.PONG]


@pytest.mark.parametrize("data,kind,reason", [
    (wk.encode(wk.Ping()), "not_connect_first", wk.REASON_AUTH_FAIL),
    (wk.encode(wk.Sendack(1, 1, 1, 1)), "not_connect_first", wk.REASON_AUTH_FAIL),
    (bytes([0xD0, 0x00]), "unknown_type", wk.REASON_NOT_SUPPORT_HEADER),
    (bytes([0x00]), "unknown_type", wk.REASON_NOT_SUPPORT_HEADER),
    (bytes([0x10, 0xFF, 0xFF, 0xFF, 0x7F]), "oversized", wk.REASON_PAYLOAD_DECODE_ERROR),
    (bytes([0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), "malformed", wk.REASON_PAYLOAD_DECODE_ERROR),
    (bytes([0x10, 0x03, 0x05, 0x01, 0x00]), "malformed", wk.REASON_PAYLOAD_DECODE_ERROR),
    (bytes([0x10, 0x04, 0x05, 0x01, 0xFF, 0xFF]), "malformed", wk.REASON_PAYLOAD_DECODE_ERROR),
])
def test_bad_input_before_connect_closes_with_reason(gw, data, kind, reason):
    before = rejected(kind)
    c = Client(gw)
    c.s.feed(data)
    assert c.s.state == CLOSED and c.t.closed
    assert rejected(kind) == before + 1
    out = c.t.packets()
    assert len(out) == 1 and out[0].type in (wk.CONNACK, wk.DISCONNECT) and out[0].reason_code == reason


def test_bad_frame_after_auth_gets_disconnect_and_others_unharmed(gw):
    a, b = Client(gw), Client(gw, uid="u2", token="t2")
    a.connect()
    b.connect()
    a.s.feed(bytes([0xE0, 0x01, 0x00]))
    assert a.s.state == CLOSED and a.t.packets()[-1].type == wk.DISCONNECT
    assert a.t.packets()[-1].reason_code == wk.REASON_NOT_SUPPORT_HEADER
    b.s.feed(b"\x70")
    assert b.t.packets()[-1].type == wk.PONG and b.s.state == AUTHED
    assert "u1" not in gw.by_uid


def test_packets_before_a_bad_frame_are_handled(gw):
    c = Client(gw)
    c.connect()
    c.s.feed(b"\x70" + bytes([0xF0, 0x00]))
    types = [p.type for p in c.t.packets()]
    assert types[1] == wk.PONG and types[2] == wk.DISCONNECT


def test_sweeper_auth_timeout_idle_and_stalled_half_frame(gw):
    never = Client(gw)
    stalled = Client(gw, uid="u2", token="t2")
    stalled.connect()
    stalled.s.feed(bytes([0x30, 0x40, 0x00]))  # half a SEND
    idle = Client(gw)
    idle.connect()
    now = time.monotonic()
    gw.sweep(now + 2)
    assert stalled.s.state == CLOSED and stalled.t.packets()[-1].type == wk.DISCONNECT
    assert never.s.state != CLOSED and idle.s.state == AUTHED
    gw.sweep(now + 5)
    assert never.s.state == CLOSED and never.t.binary == []  # no CONNECT, nothing to answer
    gw.sweep(now + 181)
    assert idle.s.state == CLOSED


def delivery(**kw):
    d = dict(message_id=42, message_seq=3, client_msg_no="cm", from_uid="u2", channel_id="u1", channel_type=1,
             timestamp=1700000000, payload=b'{"type":1,"content":"yo"}', flags=wk.FLAG_RED_DOT)
    d.update(kw)
    return Delivery(**d)


def test_recv_per_session_crypto_person_rewrite_and_retry(gw):
    a1, a2 = Client(gw, device_id="A"), Client(gw, device_flag=0, device_id="B")
    a1.connect()
    a2.connect()
    sender = Client(gw, uid="u2", token="t2")
    sender.connect()
    n = gw.deliver(delivery(), ["u1", "u2"], exclude=(7, sender.s.conn_id))
    assert n == 2  # both devices of u1; not the sending connection
    r1, r2 = a1.t.packets()[-1], a2.t.packets()[-1]
    assert r1.payload != r2.payload  # each session has its own key
    for c, r in ((a1, r1), (a2, r2)):
        assert r.channel_id == "u2" and r.from_uid == "u2" and r.flags == wk.FLAG_RED_DOT
        assert r.msg_key == c.cipher.recv_msg_key(r.message_id, r.message_seq, r.client_msg_no, r.timestamp,
                                                  r.from_uid, r.channel_id, r.channel_type, r.payload)
        assert c.cipher.decrypt(r.payload) == b'{"type":1,"content":"yo"}'
    # the sender's other device sees the chat under the peer's uid, without a red dot
    other = Client(gw, uid="u2", token="t2", device_id="X")
    other.connect()
    gw.deliver(delivery(), ["u2"], exclude=(7, sender.s.conn_id))
    r = other.t.packets()[-1]
    assert r.channel_id == "u1" and r.flags == 0
    # retry: resent after the interval, until RECVACK or maxCount
    now = time.monotonic()
    a1.s.resend_due(now + 11)
    assert a1.t.binary[-1] == a1.t.binary[-2]
    a1.s.feed(wk.encode(wk.Recvack(42, 3)))
    count = len(a1.t.binary)
    a1.s.resend_due(now + 100)
    assert len(a1.t.binary) == count and a1.s.retry is None
    a2.s.resend_due(now + 11)
    a2.s.resend_due(now + 22)
    a2.s.resend_due(now + 33)
    assert len(a2.t.binary) == 1 + 1 + 2  # connack, recv, 2 resends (maxCount 2)
    assert a2.s.retry is None
    # retries stop when the session closes
    gw.deliver(delivery(message_id=43), ["u1"])
    a1.s.close("test")
    assert a1.s.retry is None and a1.s not in gw._retrying


def test_no_persist_is_not_retried_and_v2_layout(gw):
    c = Client(gw, version=2)
    c.connect()
    gw.deliver(delivery(flags=wk.FLAG_NO_PERSIST, expire=60), ["u1"])
    r = c.t.packets(2)[-1]
    assert r.expire == 0 and r.flags == wk.FLAG_NO_PERSIST  # v2 has no Expire field
    assert c.s.retry is None


def test_master_login_kicks_other_devices_slave_only_same_device(gw):
    old = Client(gw, device_id="old")
    old.connect()
    # slave-level login of another device: no kick
    gw.tokens = None
    slave = Client(gw, uid="u1", token="t1", device_flag=0, device_id="s")
    slave.connect()
    assert [p.type for p in old.t.packets()] == [wk.CONNACK]
    # a master login elsewhere (as another node would broadcast it)
    gw.apply_login(["u1", 1, "new", 1, 9, 1])
    assert old.t.packets()[-1].type == wk.DISCONNECT and old.t.packets()[-1].reason_code == wk.REASON_CONNECT_KICK
    # slave login with the same device id replaces only that connection
    gw.apply_login(["u1", 0, "other", 0, 9, 2])
    assert [p.type for p in slave.t.packets()] == [wk.CONNACK]


def test_jsonrpc_connect_send_ping_recv(gw):
    t = FakeTransport("ws")
    s = gw.open(t)
    s.feed(b'  {"jsonrpc":"2.0","method":"connect","params":{"uid":"u1","token":"t1","deviceId":"j","deviceFlag":1,'
           b'"clientTimestamp":1},"id":"1"}{"method":"ping","id":"2"}')
    r = [json.loads(x) for x in t.text]
    assert r[0]["id"] == "1" and r[0]["result"]["reasonCode"] == 1 and r[0]["result"]["serverVersion"] == 5
    assert r[1] == {"jsonrpc": "2.0", "id": "2", "result": None}
    payload = base64.b64encode(b'{"type":1,"content":"hi"}').decode()
    msg = json.dumps({"method": "send", "id": "3", "params": {"channelId": "u2", "channelType": 1,
                      "payload": payload, "clientMsgNo": "m1", "header": {"redDot": True}}}).encode()
    s.feed(msg[:10])
    s.feed(msg[10:])
    ack = json.loads(t.text[-1])
    assert ack["id"] == "3" and ack["result"]["reasonCode"] == 1 and isinstance(ack["result"]["messageId"], str)
    assert gw.sink_.requests[-1].payload == b'{"type":1,"content":"hi"}'
    gw.deliver(delivery(), ["u1"])
    n = json.loads(t.text[-1])
    assert n["method"] == "recv" and n["params"]["channelId"] == "u2" and n["params"]["header"] == {"redDot": True}
    assert base64.b64decode(n["params"]["payload"]) == b'{"type":1,"content":"yo"}'
    s.feed(b'{"method":"recvack","params":{"messageId":"42","messageSeq":3}}')
    assert s.retry is None


def test_jsonrpc_errors(gw):
    t = FakeTransport("ws")
    s = gw.open(t)
    s.feed(b'{"method":"send","id":1,"params":{}}')
    assert json.loads(t.text[0])["error"]["code"] == -32600 and s.state == CLOSED
    t2 = FakeTransport("tcp")
    s2 = gw.open(t2)
    s2.feed(b'{"method":"connect","id":"1","params":{"uid":"u1","token":"nope"}}')
    assert json.loads(t2.text[0])["result"]["reasonCode"] == 2 and s2.state == CLOSED
    t3 = FakeTransport("tcp")
    s3 = gw.open(t3)
    s3.feed(b'{"method": tru}')
    assert json.loads(t3.text[0])["error"]["code"] == -32700 and s3.state == CLOSED


def test_slow_client_is_closed(gw):
    c = Client(gw)
    c.connect()
    c.s._writing = True  # a write is stuck on a client that does not read
    for _ in range(gw.max_pending_frames + 1):
        c.s.write_frame(b"\x80")
    assert c.s.state == CLOSED


def test_visitor_connects_without_a_token_at_slave_level(gw):
    """customerService.visitorsSuffix: no token check, and the session is slave-level (WuKongIM's rule)."""
    v = Client(gw, uid="guest___vstr", token="")
    assert v.connect().reason_code == wk.REASON_SUCCESS
    assert v.s.state == AUTHED and v.s.device_level == 0
    u = Client(gw, uid="u1", token="t1")
    assert u.connect().reason_code == wk.REASON_SUCCESS and u.s.device_level == 1
