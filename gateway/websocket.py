"""The WebSocket protocol of the client gateway (RFC 6455), as pure functions: no sockets.

* ``parse_request`` / ``handshake``: the HTTP/1.1 upgrade request a client opens with,
  and the bytes to answer it (101 with ``Sec-WebSocket-Accept``, or the error status a
  browser or a load balancer should see: 400 for a plain HTTP request or a bad key, 426
  without ``Sec-WebSocket-Version``). Any path is accepted, as WuKongIM does; no
  subprotocol or extension is negotiated (the SDKs ask for none).
* ``FrameReader``: the client's frames, fed in any split, out as whole messages:
  masked frames only, continuation frames joined, text checked as UTF-8, pings
  answered by the caller (``PING`` events), a message over ``max_message`` bytes
  refused before it is buffered, an unknown opcode refused on its first byte, a close
  frame's code and reason checked (RFC 6455 7.4). A protocol fault raises ``WsError``
  with the close code to send (1002 protocol error, 1007 bad UTF-8, 1009 too big).
* ``frame_header``: the header of an unmasked, final server frame.

``gateway.ws_listener`` does the socket I/O around these.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import NamedTuple

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSIONS = ("13", "8", "7")
MAX_REQUEST_BYTES = 16384  # the upgrade request, headers included

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# what FrameReader.feed returns besides message payloads
PING, CLOSE = "ping", "close"

CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009


class WsError(Exception):
    """A client broke the protocol: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Request(NamedTuple):
    method: str
    path: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


class HandshakeError(Exception):
    """The request is not a WebSocket upgrade we accept: answer ``response`` and close."""

    def __init__(self, response: bytes, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


def _http_error(status: str, body: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    data = body.encode()
    head = [f"HTTP/1.1 {status}", "Content-Type: text/plain", f"Content-Length: {len(data)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


REQUEST_TOO_LARGE = _http_error("431 Request Header Fields Too Large", "upgrade request too large\n")


def request_end(buf: bytes) -> int:
    """Where the upgrade request in ``buf`` ends (the index after its blank line), or -1 if it has not."""
    i = buf.find(b"\r\n\r\n")
    return -1 if i < 0 else i + 4


def parse_request(head: bytes) -> Request:
    """The request line and headers of ``head`` (up to and including the blank line)."""
    text = head.decode("latin-1")  # every byte decodes
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HandshakeError(_http_error("400 Bad Request", "bad request line\n"), f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HandshakeError(_http_error("400 Bad Request", "bad header\n"), f"bad header line {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(parts[0], parts[1], parts[2], headers)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest()).decode("ascii")


def handshake(req: Request) -> bytes:
    """The 101 answer to a valid upgrade request; raises ``HandshakeError`` (with its answer) otherwise."""
    h = req.headers
    if req.method != "GET" or h.get("upgrade", "").lower() != "websocket" \
            or "upgrade" not in {t.strip() for t in h.get("connection", "").lower().split(",")}:
        raise HandshakeError(_http_error("400 Bad Request", "WebSocket upgrade required\n"), "not an upgrade request")
    if req.version != "HTTP/1.1":
        raise HandshakeError(_http_error("400 Bad Request", "HTTP/1.1 required\n"), f"upgrade over {req.version}")
    version = h.get("sec-websocket-version", "")
    if not version:
        raise HandshakeError(_http_error("426 Upgrade Required", "No Websocket protocol version defined",
                                         (("Sec-WebSocket-Version", ", ".join(SUPPORTED_VERSIONS)),)),
                             "no Sec-WebSocket-Version")
    if version not in SUPPORTED_VERSIONS:
        raise HandshakeError(_http_error("400 Bad Request", f"Unsupported WebSocket Version: {version}",
                                         (("Sec-WebSocket-Version", ", ".join(SUPPORTED_VERSIONS)),)),
                             f"unsupported version {version[:20]!r}")
    key = h.get("sec-websocket-key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise HandshakeError(_http_error("400 Bad Request", "Invalid Sec-WebSocket-Key"), "bad Sec-WebSocket-Key")
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode("latin-1")


def frame_header(opcode: int, n: int) -> bytes:
    """Header of an unmasked, final frame (RFC 6455 5.2) carrying ``n`` bytes."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")


def close_frame(code: int) -> bytes:
    return b"\x88\x02" + code.to_bytes(2, "big")


def pong_frame(payload: bytes) -> bytes:
    return frame_header(OP_PONG, len(payload)) + payload


def unmask(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, no per-byte loop)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class FrameReader:
    """Client frames in, whole messages out (see the module doc)."""

    __slots__ = ("buf", "max_message", "_parts", "_opcode", "_size")

    def __init__(self, max_message: int) -> None:
        self.buf = bytearray()  # an incomplete frame (appended to, never copied whole per read)
        self.max_message = max_message
        self._parts: list[bytes] | None = None  # a fragmented message being joined
        self._opcode = 0
        self._size = 0

    def feed(self, data: bytes) -> list:
        """Bytes from the socket, in any split: a list of message payloads (bytes), ``(PING, payload)``
        for each ping, and ``(CLOSE, code)`` once the client closes (nothing after it is read)."""
        buf = self.buf
        if buf:
            buf += data
        else:
            buf = data
        out: list = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise WsError(CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)")
            if not b1 & 0x80:
                raise WsError(CLOSE_PROTOCOL, "unmasked client frame")
            opcode = b0 & 0x0F
            if opcode not in _OPCODES:
                raise WsError(CLOSE_PROTOCOL, f"unknown opcode {opcode:#x}")
            n = b1 & 0x7F
            at = pos + 2
            if n == 126:
                if end - at < 2:
                    break
                n = int.from_bytes(buf[at:at + 2], "big")
                at += 2
            elif n == 127:
                if end - at < 8:
                    break
                n = int.from_bytes(buf[at:at + 8], "big")
                at += 8
            if opcode >= 0x8:
                if n > 125 or not b0 & 0x80:
                    raise WsError(CLOSE_PROTOCOL, "control frame longer than 125 bytes or fragmented")
            elif self._size + n > self.max_message:
                raise WsError(CLOSE_TOO_BIG, f"message over {self.max_message} bytes")
            if end - at < 4 + n:
                break
            payload = unmask(buf[at + 4:at + 4 + n], buf[at:at + 4])
            pos = at + 4 + n
            if b0 == 0x82 and self._parts is None:  # a whole binary message: every WKProto packet
                out.append(payload)
                continue
            if opcode >= 0x8:
                if opcode == OP_PING:
                    out.append((PING, payload))
                elif opcode == OP_CLOSE:
                    out.append((CLOSE, close_code(payload)))
                    self.buf = bytearray()
                    return out
                continue  # a pong
            msg = self._message(opcode, payload, b0 & 0x80)
            if msg is not None:
                out.append(msg)
        if buf is self.buf:
            del buf[:pos]
        elif pos < end:
            self.buf = bytearray(buf[pos:])
        return out

    def _message(self, opcode: int, payload: bytes, fin: int) -> bytes | None:
        if opcode == OP_CONT:
            if self._parts is None:
                raise WsError(CLOSE_PROTOCOL, "continuation frame without a message")
        else:  # text or binary (feed refused every other opcode)
            if self._parts is not None:
                raise WsError(CLOSE_PROTOCOL, "new message inside a fragmented one")
            if fin:
                if opcode == OP_TEXT:
                    _check_utf8(payload)
                return payload
            self._parts, self._opcode, self._size = [], opcode, 0
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        msg = b"".join(self._parts)
        if self._opcode == OP_TEXT:
            _check_utf8(msg)
        self._parts, self._size = None, 0
        return msg


_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))


def close_code(payload: bytes) -> int:
    """The status code of a client's close frame (1000 when it gives none); ``WsError`` if the
    frame is malformed: one byte, a code no endpoint may send, or a reason that is not UTF-8."""
    if not payload:
        return CLOSE_NORMAL
    if len(payload) == 1:
        raise WsError(CLOSE_PROTOCOL, "close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not 1000 <= code <= 4999 or code in (1004, 1005, 1006) or 1015 <= code <= 2999:
        raise WsError(CLOSE_PROTOCOL, f"close code {code} may not be sent")
    _check_utf8(payload[2:])
    return code


def _check_utf8(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise WsError(CLOSE_BAD_DATA, "text message is not UTF-8") from None
