"""gateway.websocket: the upgrade handshake and the client frame reader (RFC 6455), with frames
built by gevent-websocket's encoder as the reference."""
from __future__ import annotations

import os
import random

import pytest
from geventwebsocket.websocket import Header

from gateway import websocket as wsp


def request(*lines: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    return (f"{method} /any/path?x=1 {version}\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


UPGRADE = ("Host: example", "Upgrade: websocket", "Connection: keep-alive, Upgrade",
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")


def answer(raw: bytes) -> bytes:
    end = wsp.request_end(raw)
    assert end == len(raw)
    return wsp.handshake(wsp.parse_request(raw[:end]))


def refused(raw: bytes) -> bytes:
    with pytest.raises(wsp.HandshakeError) as exc:
        answer(raw)
    return exc.value.response


def test_accept_key_is_rfc_6455_example():
    resp = answer(request(*UPGRADE))
    assert resp.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in resp
    assert b"Upgrade: websocket\r\n" in resp and resp.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Protocol" not in resp


def test_headers_are_case_insensitive_and_any_path():
    raw = request("UPGRADE: WebSocket", "connection: Upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
                  "SEC-WEBSOCKET-VERSION: 13", "X-Real-IP: 10.1.2.3")
    req = wsp.parse_request(raw)
    assert req.path == "/any/path?x=1" and req.headers["x-real-ip"] == "10.1.2.3"
    assert answer(raw).startswith(b"HTTP/1.1 101 ")


def test_incomplete_request_has_no_end():
    assert wsp.request_end(request(*UPGRADE)[:-2]) == -1


@pytest.mark.parametrize("raw, status, text", [
    (request("Host: x"), b"400", b"WebSocket upgrade required"),
    (request(*UPGRADE, method="POST"), b"400", b"WebSocket upgrade required"),
    (request(*UPGRADE[:-1]), b"426", b"No Websocket protocol version"),
    (request(*UPGRADE[:-1], "Sec-WebSocket-Version: 99"), b"400", b"Unsupported WebSocket Version: 99"),
    (request(*UPGRADE[:3], "Sec-WebSocket-Key: short", UPGRADE[4]), b"400", b"Invalid Sec-WebSocket-Key"),
    (request(*UPGRADE[:3], "Sec-WebSocket-Key: !!!!", UPGRADE[4]), b"400", b"Invalid Sec-WebSocket-Key"),
    (request(*UPGRADE, version="HTTP/1.0"), b"400", b"HTTP/1.1 required"),
    (b"garbage\r\n\r\n", b"400", b"bad request line"),
    (request(*UPGRADE[:2], "Connection: x-not-upgrade-really", *UPGRADE[3:]), b"400", b"WebSocket upgrade required"),
    (request(*UPGRADE, "no colon here"), b"400", b"bad header"),
])
def test_refusals_answer_http_errors(raw, status, text):
    resp = refused(raw)
    assert resp.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"Connection: close\r\n" in resp and text in resp
    body = resp.split(b"\r\n\r\n", 1)[1]
    assert f"Content-Length: {len(body)}".encode() in resp


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None, rsv: int = 0) -> bytes:
    """A client frame as gevent-websocket's encoder writes it (masked unless mask=b'')."""
    mask = os.urandom(4) if mask is None else mask
    head = bytearray(Header.encode_header(fin, opcode, mask, len(payload), 0))
    head[0] |= rsv
    if not mask:
        return bytes(head) + payload
    h = Header()
    h.mask, h.length = mask, len(payload)
    return bytes(head) + bytes(h.mask_payload(payload))


def feed_all(reader: wsp.FrameReader, data: bytes, step: int) -> list:
    out = []
    for i in range(0, len(data), step):
        out += reader.feed(data[i:i + step])
    return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 1 << 20])
def test_messages_in_any_split(step):
    msgs = [b"", b"x", os.urandom(125), os.urandom(126), os.urandom(65535), os.urandom(65536), os.urandom(70001)]
    data = b"".join(client_frame(wsp.OP_BINARY, m) for m in msgs) + client_frame(wsp.OP_TEXT, "héllo".encode())
    reader = wsp.FrameReader(1 << 20)
    assert feed_all(reader, data, step) == msgs + ["héllo".encode()]
    assert reader.buf == b""


def test_fragments_joined_with_control_frames_between():
    data = (client_frame(wsp.OP_TEXT, b'{"a":', fin=False) + client_frame(wsp.OP_PING, b"hi")
            + client_frame(wsp.OP_CONT, b'"\xc3', fin=False) + client_frame(wsp.OP_PONG, b"")
            + client_frame(wsp.OP_CONT, b'\xa9"}'))
    for step in (1, 5, len(data)):
        assert feed_all(wsp.FrameReader(1000), data, step) == [(wsp.PING, b"hi"), '{"a":"é"}'.encode()]


def test_close_ends_reading():
    data = client_frame(wsp.OP_BINARY, b"a") + client_frame(wsp.OP_CLOSE, (1001).to_bytes(2, "big") + b"bye")
    reader = wsp.FrameReader(1000)
    assert reader.feed(data + client_frame(wsp.OP_BINARY, b"after")) == [b"a", (wsp.CLOSE, 1001)]
    assert wsp.FrameReader(1000).feed(client_frame(wsp.OP_CLOSE, b"")) == [(wsp.CLOSE, 1000)]


@pytest.mark.parametrize("data, code", [
    (client_frame(wsp.OP_BINARY, b"abc", mask=b""), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_BINARY, b"abc", rsv=0x40), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CONT, b"abc"), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_TEXT, b"a", fin=False) + client_frame(wsp.OP_BINARY, b"b"), wsp.CLOSE_PROTOCOL),
    (client_frame(0x3, b"abc"), wsp.CLOSE_PROTOCOL),
    (client_frame(0xB, b"abc"), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_PING, b"p" * 126), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_PING, b"p", fin=False), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_TEXT, b"\xff\xfe"), wsp.CLOSE_BAD_DATA),
    (client_frame(wsp.OP_TEXT, b"\xc3", fin=False) + client_frame(wsp.OP_CONT, b"x"), wsp.CLOSE_BAD_DATA),
    (client_frame(wsp.OP_BINARY, b"a", fin=False) + client_frame(wsp.OP_BINARY, b"b"), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CLOSE, b"\x03"), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CLOSE, (5).to_bytes(2, "big")), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CLOSE, (1005).to_bytes(2, "big")), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CLOSE, (2000).to_bytes(2, "big")), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CLOSE, (5000).to_bytes(2, "big")), wsp.CLOSE_PROTOCOL),
    (client_frame(wsp.OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"), wsp.CLOSE_BAD_DATA),
])
def test_protocol_faults_raise_the_close_code(data, code):
    with pytest.raises(wsp.WsError) as exc:
        wsp.FrameReader(1000).feed(data)
    assert exc.value.code == code


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1014, 3000, 4999])
def test_close_codes_an_endpoint_may_send(code):
    frame = client_frame(wsp.OP_CLOSE, code.to_bytes(2, "big") + "é".encode())
    assert wsp.FrameReader(1000).feed(frame) == [(wsp.CLOSE, code)]


def test_unknown_opcode_refused_on_its_first_bytes():
    head = client_frame(0x3, b"z" * 5000)[:8]  # no payload yet
    with pytest.raises(wsp.WsError) as exc:
        wsp.FrameReader(1 << 20).feed(head)
    assert exc.value.code == wsp.CLOSE_PROTOCOL


def test_large_message_in_small_reads_keeps_one_growing_buffer():
    payload = os.urandom(1 << 20)
    data = client_frame(wsp.OP_BINARY, payload) + client_frame(wsp.OP_BINARY, b"next")
    reader = wsp.FrameReader(1 << 21)
    out = []
    for i in range(0, len(data), 65536):
        out += reader.feed(data[i:i + 65536])
        if not out:
            assert isinstance(reader.buf, bytearray) and len(reader.buf) == min(i + 65536, len(data))
    assert out == [payload, b"next"] and reader.buf == b""


def test_too_big_refused_from_the_header_alone():
    head = client_frame(wsp.OP_BINARY, b"z" * 5000)[:8]  # 2 + 2 length + 4 mask, no payload yet
    with pytest.raises(wsp.WsError) as exc:
        wsp.FrameReader(4096).feed(head)
    assert exc.value.code == wsp.CLOSE_TOO_BIG
    frag = client_frame(wsp.OP_BINARY, b"a" * 3000, fin=False) + client_frame(wsp.OP_CONT, b"b" * 3000)
    with pytest.raises(wsp.WsError):
        wsp.FrameReader(4096).feed(frag)


def test_unmask_matches_bytewise_xor():
    rnd = random.Random(7)
    for n in list(range(0, 20)) + [1000, 4097]:
        data, mask = rnd.randbytes(n), rnd.randbytes(4)
        assert wsp.unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_server_control_frames():
    assert wsp.close_frame(1000) == b"\x88\x02\x03\xe8"
    assert wsp.pong_frame(b"hi") == Header.encode_header(True, wsp.OP_PONG, b"", 2, 0) + b"hi"


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 1000, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_header_matches_geventwebsocket(opcode, n):
    assert wsp.frame_header(opcode, n) == Header.encode_header(True, opcode, b"", n, 0)
