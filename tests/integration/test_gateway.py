"""The client gateway of a real node (real etcd, Redis, node process) over TCP and WebSocket."""
from __future__ import annotations

import socket
import time

import gevent
import pytest
import websocket

from gateway import wkproto as wk
from gateway.client import ConnectRefused, WKClient
from gateway.session_crypto import client_key_pair
from tests.support.clients import easy_sdk
from tests.support.servers import Cluster, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def node():
    c = Cluster(1, extra={"conn.partialFrameTimeout": "1s"})
    try:
        c.start()
        n = c.nodes[1]
        for uid in ("a1", "a2", "a3", "ws1", "k1", "easy1"):
            assert n.post("/user/token", {"uid": uid, "token": "tok-" + uid, "device_flag": 1, "device_level": 1})[0] == 200
        assert n.post("/user/token", {"uid": "easy1", "token": "tok-easy1", "device_flag": 2})[0] == 200
        yield n
    finally:
        c.close()


def tcp(n):
    return f"127.0.0.1:{n.ports['tcp']}"


def ws(n, path="/"):
    return f"ws://127.0.0.1:{n.ports['ws']}{path}"


def metric(n, name):
    text = n.get("/metrics", base=n.manager)[1]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_connect_ping_every_version(node, version, transport):
    c = WKClient(tcp(node) if transport == "tcp" else ws(node, "/any/path"), "a1", "tok-a1", version=version,
                 device_id=f"d{version}{transport}")
    try:
        ack = c.connect()
        assert ack.reason_code == 1 and ack.has_server_version == (version > 3)
        if version >= 4:
            assert ack.node_id == 1
        assert c.ping() < 1.0
        # no messaging yet on a bare gateway test: the SEND is answered, never silent
        assert c.send("a2", 1, b'{"type":1,"content":"x"}').type == wk.SENDACK
    finally:
        c.close()


@pytest.mark.parametrize("uid,token", [("a1", "wrong"), ("a1", ""), ("ghost", "x"), ("a@1", "tok-a1")])
@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_bad_credentials_get_connack_2_and_close(node, uid, token, transport):
    c = WKClient(tcp(node) if transport == "tcp" else ws(node), uid, token)
    with pytest.raises(ConnectRefused) as e:
        c.connect()
    assert e.value.reason == wk.REASON_AUTH_FAIL
    assert c.closed.wait(3), "server must close after a refused CONNECT"


def test_ws_binary_and_text_feed_one_stream_and_one_frame_per_message(node):
    conn = websocket.create_connection(ws(node, "/x"))
    priv, pub = client_key_pair()
    raw = wk.encode(wk.Connect(5, 1, "wsdev", "ws1", "tok-ws1", int(time.time() * 1000), pub))
    conn.send_binary(raw[:5])
    conn.send(raw[5:20].decode("latin-1") if raw[5:20].isascii() else "")  # a text message, same stream
    rest = raw[5:] if not raw[5:20].isascii() else raw[20:]
    conn.send_binary(rest + b"\x70\x70")  # the rest of CONNECT and two PINGs in one message
    frames = [conn.recv() for _ in range(3)]
    assert frames[0][0] >> 4 == wk.CONNACK
    assert frames[1] == b"\x80" and frames[2] == b"\x80"  # two PONGs, two WebSocket messages
    conn.close()


def _raw_ws(n, head: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", n.ports["ws"]), timeout=5)
    s.sendall(head)
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return out
        if not data:
            return out
        out += data


UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def test_ws_listener_handshake_refusals_ping_and_protocol_errors(node):
    """The node's own WebSocket listener on a real socket: plain HTTP and a bad key are refused with
    an HTTP status; a ping (between two fragments of a CONNECT) is answered with a pong; an unmasked
    frame closes the connection with 1002; other clients are unharmed."""
    assert _read_all(_raw_ws(node, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
        b"HTTP/1.1 400 Bad Request\r\n")
    bad_key = UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short")
    assert _read_all(_raw_ws(node, bad_key)).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    no_version = UPGRADE.replace(b"Sec-WebSocket-Version: 13\r\n", b"")
    assert _read_all(_raw_ws(node, no_version)).startswith(b"HTTP/1.1 426 Upgrade Required\r\n")

    s = _raw_ws(node, UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    _priv, pub = client_key_pair()
    raw = wk.encode(wk.Connect(5, 1, "rawws", "ws1", "tok-ws1", int(time.time() * 1000), pub))
    s.sendall(_masked(0x2, raw[:10], fin=False) + _masked(0x9, b"are you there")
              + _masked(0x0, raw[10:]))
    got = b""
    while len(got) < 2 + 13 or got[0] != 0x8A:
        got += s.recv(65536)
        if got and got[0] == 0x8A and len(got) >= 15:
            break
    assert got[:15] == b"\x8a\x0d" + b"are you there"  # the pong comes first, then the CONNACK
    rest = got[15:]
    while len(rest) < 2:
        rest += s.recv(65536)
    assert rest[0] == 0x82  # one binary message: the CONNACK
    s.sendall(bytes((0x82, 3)) + b"abc")  # unmasked: a protocol error
    tail = _read_all(s)
    assert b"\x88\x02\x03\xea" in tail  # close 1002
    other = WKClient(ws(node), "a2", "tok-a2", device_id="after-raw")
    try:
        assert other.connect().reason_code == 1
    finally:
        other.close()


def test_garbage_before_connect_and_others_unharmed(node):
    good = WKClient(tcp(node), "a3", "tok-a3")
    good.connect()
    before = metric(node, 'skein_gateway_rejected_total{reason="not_connect_first"}')
    s = socket.create_connection(("127.0.0.1", node.ports["tcp"]))
    s.sendall(wk.encode(wk.Send(channel_id="x", channel_type=1)))
    reply = wk.FrameDecoder().feed(s.recv(100))
    assert reply[0].type == wk.DISCONNECT and reply[0].reason_code == wk.REASON_AUTH_FAIL
    assert s.recv(100) == b""  # closed
    assert metric(node, 'skein_gateway_rejected_total{reason="not_connect_first"}') == before + 1
    assert good.ping() < 1


@pytest.mark.parametrize("frame,kind", [
    (bytes([0x10, 0xFF, 0xFF, 0xFF, 0x7F]), "oversized"),
    (bytes([0xE0, 0x00]), "unknown_type"),
    (bytes([0x10, 0x02, 0x05, 0x01]), "malformed"),
])
def test_bad_frames_closed_cleanly(node, frame, kind):
    before = metric(node, f'skein_gateway_rejected_total{{reason="{kind}"}}')
    s = socket.create_connection(("127.0.0.1", node.ports["tcp"]))
    s.sendall(frame)
    data = s.recv(100)
    assert data and data[0] >> 4 in (wk.CONNACK, wk.DISCONNECT)
    s.settimeout(3)
    assert s.recv(100) == b""
    assert metric(node, f'skein_gateway_rejected_total{{reason="{kind}"}}') == before + 1


def test_half_frame_stall_after_auth_is_closed(node):
    c = WKClient(tcp(node), "a2", "tok-a2")
    c.connect()
    c.send_raw(bytes([0x30, 0x40, 0x00, 0x00]))  # half a SEND, then nothing
    assert c.closed.wait(5)
    assert c.disconnects and c.disconnects[-1].reason_code == wk.REASON_PAYLOAD_DECODE_ERROR


def test_thousands_of_silent_connections_are_closed_and_harm_nobody(node):
    good = WKClient(tcp(node), "k1", "tok-k1")
    good.connect()
    before = metric(node, 'skein_gateway_rejected_total{reason="auth_timeout"}')
    socks = []
    for _ in range(2000):
        socks.append(socket.create_connection(("127.0.0.1", node.ports["tcp"])))
    t0 = time.time()
    pings = []
    while time.time() - t0 < 3:
        pings.append(good.ping())
        gevent.sleep(0.1)
    assert max(pings) < 0.5, max(pings)

    def all_closed():
        return metric(node, 'skein_gateway_rejected_total{reason="auth_timeout"}') - before >= 2000
    wait_until(all_closed, 10, what="2000 silent connections closed after the 4 s CONNECT deadline")
    closed = 0
    for s in socks:
        s.settimeout(2)
        try:
            if s.recv(10) == b"":
                closed += 1
        except OSError:
            closed += 1
        s.close()
    assert closed == 2000
    assert time.time() - t0 < 8
    assert good.ping() < 1


def test_device_quit_and_master_token_kick(node):
    c = WKClient(tcp(node), "k1", "tok-k1", device_id="kq")
    c.connect()
    assert node.post("/user/device_quit", {"uid": "k1", "device_flag": 1}) == (200, {"status": 200})
    assert c.closed.wait(5)
    assert c.disconnects and c.disconnects[0].reason_code == wk.REASON_CONNECT_KICK
    with pytest.raises(ConnectRefused):  # the token was cleared
        WKClient(tcp(node), "k1", "tok-k1").connect()
    node.post("/user/token", {"uid": "k1", "token": "tok-k1", "device_flag": 1, "device_level": 1})
    old = WKClient(tcp(node), "k1", "tok-k1", device_id="old")
    old.connect()
    new = WKClient(ws(node), "k1", "tok-k1", device_id="new")
    new.connect()
    wait_until(lambda: old.disconnects, 3, what="DISCONNECT 12 to the older master connection")
    assert old.disconnects[0].reason_code == wk.REASON_CONNECT_KICK
    assert old.closed.wait(4)
    assert new.ping() < 1


def test_api_validation_for_token_calls(node):
    assert node.post("/user/token", {"uid": "x@y", "token": "t"})[0] == 400
    assert node.post("/user/token", {"uid": "x", "token": 5})[0] == 400
    assert node.post("/user/token", {"uid": "x"})[0] == 400
    code, body = node.post("/user/token", b"{not json")
    assert code == 400 and "JSON" in body["msg"] and body["status"] == 400
    assert node.post("/user/device_quit", {"uid": "x", "device_flag": "a"})[0] == 400


def test_wukong_easy_sdk_connects_pings_and_is_refused_on_wrong_token(node):
    c = easy_sdk(ws(node), "easy1", "tok-easy1")
    try:
        c.cmd(cmd="connect")
        ev = c.wait(lambda e: e["event"] in ("connected", "connect_error"))
        assert ev["event"] == "connected" and ev["result"]["reasonCode"] == 1, ev
        c.cmd(cmd="ping")
        assert c.wait(lambda e: e["event"] in ("pong", "ping_error"))["event"] == "pong"
    finally:
        c.close()
    bad = easy_sdk(ws(node), "easy1", "wrong-token")
    try:
        bad.cmd(cmd="connect")
        ev = bad.wait(lambda e: e["event"] in ("connected", "connect_error"))
        assert ev["event"] == "connect_error" and ev["code"] == wk.REASON_AUTH_FAIL, ev
    finally:
        bad.close()
