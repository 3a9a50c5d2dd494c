"""gateway.proxy_protocol against the examples of haproxy's PROXY protocol spec (v1 and v2), byte for byte."""
from __future__ import annotations

import struct

import pytest

from gateway.proxy_protocol import V2_SIG, ProxyHeader, ProxyProtocolError, parse, want

CLIENT = b"\x10\x0c\x00\x04MQTT"  # whatever the client sends after the header

FFFF6 = ":".join(["ffff"] * 8)
V1_CASES = [
    # the spec's examples (section 2.1)
    (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
     ProxyHeader(1, 56, ("255.255.255.255", 65535), ("255.255.255.255", 65535), family="TCP4")),
    (f"PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n".encode(),
     ProxyHeader(1, 104, (FFFF6, 65535), (FFFF6, 65535), family="TCP6")),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, 15, family="UNKNOWN")),
    (f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n".encode(), ProxyHeader(1, 107, family="UNKNOWN")),
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
     ProxyHeader(1, 47, ("192.168.0.1", 56324), ("192.168.0.11", 443), family="TCP4")),
    (b"PROXY TCP6 2001:db8::1 ::1 51000 5100\r\n",
     ProxyHeader(1, 39, ("2001:db8::1", 51000), ("::1", 5100), family="TCP6")),
]


def v2(cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIG + bytes((0x20 | cmd, fam)) + struct.pack("!H", len(body)) + body


V4_BODY = bytes((203, 0, 113, 7)) + bytes((10, 0, 0, 5)) + struct.pack("!HH", 40001, 5100)
V6_BODY = (bytes.fromhex("20010db8000000000000000000000042") + bytes(15) + b"\x01"
           + struct.pack("!HH", 40002, 5100))
TLVS = bytes((0x01, 0x00, 0x02)) + b"h2" + bytes((0x04, 0x00, 0x00))  # ALPN "h2", NOOP (empty)
V2_CASES = [
    (v2(1, 0x11, V4_BODY), ProxyHeader(2, 28, ("203.0.113.7", 40001), ("10.0.0.5", 5100), family="INET")),
    (v2(1, 0x21, V6_BODY), ProxyHeader(2, 52, ("2001:db8::42", 40002), ("::1", 5100), family="INET6")),
    (v2(1, 0x11, V4_BODY + TLVS),
     ProxyHeader(2, 28 + len(TLVS), ("203.0.113.7", 40001), ("10.0.0.5", 5100), family="INET")),
    (v2(0, 0x00, b""), ProxyHeader(2, 16, command="LOCAL", family="UNSPEC")),  # haproxy's health checks
    (v2(0, 0x11, V4_BODY), ProxyHeader(2, 28, command="LOCAL", family="UNSPEC")),  # LOCAL: addresses ignored
    (v2(1, 0x00, b""), ProxyHeader(2, 16, family="UNSPEC")),
    (v2(1, 0x31, bytes(216)), ProxyHeader(2, 232, family="UNIX")),
]


@pytest.mark.parametrize("raw,expected", V1_CASES + V2_CASES)
def test_complete_header_then_client_bytes(raw: bytes, expected: ProxyHeader) -> None:
    assert len(raw) == expected.length
    assert parse(raw) == expected
    h = parse(raw + CLIENT)
    assert h == expected
    assert (raw + CLIENT)[h.length:] == CLIENT


@pytest.mark.parametrize("raw,expected", V1_CASES + V2_CASES)
def test_every_split_and_exact_reads(raw: bytes, expected: ProxyHeader) -> None:
    """Byte by byte: incomplete until the last byte; ``want`` never reads past the header."""
    for i in range(len(raw)):
        assert parse(raw[:i]) is None, i
        assert 1 <= want(raw[:i]) <= len(raw) - i, i
    assert parse(raw) == expected
    # a reader that takes exactly want() bytes each time lands on the header's end
    buf = b""
    stream = raw + CLIENT
    while parse(buf) is None:
        buf += stream[len(buf):len(buf) + want(buf)]
    assert buf == raw


def test_remote() -> None:
    assert parse(V1_CASES[4][0]).remote("127.0.0.1:9") == "192.168.0.1:56324"
    assert parse(b"PROXY UNKNOWN\r\n").remote("127.0.0.1:9") == "127.0.0.1:9"
    assert parse(v2(0, 0x11, V4_BODY)).remote("127.0.0.1:9") == "127.0.0.1:9"


MALFORMED = [
    b"\x10\x0c\x00\x04MQTT",  # a client without any header (binary WKProto CONNECT starts with 0x10)
    b"GET / HTTP/1.1\r\n",  # an HTTP request without a header
    b"PROXY\r\n",
    b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # LF without CR
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + b" " * 80 + b"\r\n",  # longer than 107
    b"PROXY " + "\u00e9".encode() * 5 + b"\r\n",
    V2_SIG[:11] + b"X" + bytes(4),  # signature off by one byte
    V2_SIG + bytes((0x11, 0x11, 0, 12)) + V4_BODY[:12],  # version 1 in a v2 header
    V2_SIG + bytes((0x22, 0x11, 0, 12)) + V4_BODY[:12],  # command 2
    V2_SIG + bytes((0x21, 0x41, 0, 12)) + V4_BODY[:12],  # family 4
    V2_SIG + bytes((0x21, 0x13, 0, 12)) + V4_BODY[:12],  # transport 3
    v2(1, 0x11, V4_BODY[:8]),  # length shorter than an IPv4 address block
    v2(1, 0x21, V4_BODY),  # IPv6 family with IPv4's 12 bytes
    v2(1, 0x12, V4_BODY),  # UDP over a stream listener
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(raw)
    with pytest.raises(ProxyProtocolError):
        parse(raw + CLIENT)


def test_no_header_is_refused_on_the_first_bytes() -> None:
    """A client that talks without a header is told apart at once, not after a timeout."""
    for first in (b"\x10", b"G", b"\x16\x03\x01", b"PROXZ", b"\r\n\r\n\x01"):
        with pytest.raises(ProxyProtocolError):
            parse(first)


@pytest.mark.parametrize("raw", [V1_CASES[0][0][:-1], V1_CASES[1][0][:50], b"PRO", b"PROXY UNKNOWN\r",
                                 V2_SIG[:5], V2_SIG, v2(1, 0x11, V4_BODY)[:20], v2(1, 0x11, V4_BODY + TLVS)[:-1],
                                 b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + b" " * 70])
def test_truncated_headers_are_incomplete(raw: bytes) -> None:
    """Truncated: not refused yet (more may come); the listener's timeout ends it."""
    assert parse(raw) is None
    assert want(raw) >= 1


def test_v1_without_crlf_within_107_bytes_is_refused() -> None:
    line = b"PROXY UNKNOWN " + b"x" * 93
    assert len(line) == 107
    with pytest.raises(ProxyProtocolError):
        parse(line)
    assert parse(line[:106]) is None
