"""WKProto, WuKongIM's binary client protocol (versions 1-5): packets, encoder, decoder.

Pure functions and small classes, no I/O. Layouts follow WuKongIMGoProto v1.2.3 (see
``../shared/reference/wukongim.md`` §1):

* byte 0 is ``type << 4 | flags`` (DUP, SyncOnce, RedDot, NoPersist; on CONNACK bit 0
  is HasServerVersion); PING and PONG are that single byte;
* then the remaining length as a little-endian base-128 varint of at most 4 bytes,
  capped at 1 MiB;
* strings are a big-endian int16 length plus UTF-8 bytes; a payload is the rest.

``FrameDecoder`` is incremental: feed it any split of a byte stream and it returns the
complete packets, keeping partial bytes for the next call. Malformed input raises
``ProtocolError`` with the WuKongIM reason code that fits.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# ---- packet types
CONNECT, CONNACK, SEND, SENDACK, RECV, RECVACK, PING, PONG, DISCONNECT, SUB, SUBACK, EVENT = range(1, 13)
TYPE_NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", SEND: "SEND", SENDACK: "SENDACK", RECV: "RECV",
              RECVACK: "RECVACK", PING: "PING", PONG: "PONG", DISCONNECT: "DISCONNECT", SUB: "SUB",
              SUBACK: "SUBACK", EVENT: "EVENT"}

LATEST_VERSION = 5
MAX_REMAINING_LENGTH = 1024 * 1024

# ---- header flags (low nibble of byte 0)
FLAG_DUP = 0x08
FLAG_SYNC_ONCE = 0x04
FLAG_RED_DOT = 0x02
FLAG_NO_PERSIST = 0x01
FLAG_HAS_SERVER_VERSION = 0x01  # CONNACK only

# ---- setting byte (SEND / RECV / SUB)
SETTING_RECEIPT = 0x80
SETTING_SIGNAL = 0x20
SETTING_NO_ENCRYPT = 0x10
SETTING_TOPIC = 0x08
SETTING_STREAM = 0x02

# ---- reason codes (WuKongIMGoProto common.go)
REASON_UNKNOWN = 0
REASON_SUCCESS = 1
REASON_AUTH_FAIL = 2
REASON_SUBSCRIBER_NOT_EXIST = 3
REASON_IN_BLACKLIST = 4
REASON_CHANNEL_NOT_EXIST = 5
REASON_USER_NOT_ON_NODE = 6
REASON_SENDER_OFFLINE = 7
REASON_MSG_KEY_ERROR = 8
REASON_PAYLOAD_DECODE_ERROR = 9
REASON_FORWARD_SEND_PACKET_ERROR = 10
REASON_NOT_ALLOW_SEND = 11
REASON_CONNECT_KICK = 12
REASON_NOT_IN_WHITELIST = 13
REASON_QUERY_TOKEN_ERROR = 14
REASON_SYSTEM_ERROR = 15
REASON_CHANNEL_ID_ERROR = 16
REASON_NODE_MATCH_ERROR = 17
REASON_NODE_NOT_MATCH = 18
REASON_BAN = 19
REASON_NOT_SUPPORT_HEADER = 20
REASON_CLIENT_KEY_IS_EMPTY = 21
REASON_RATE_LIMIT = 22
REASON_NOT_SUPPORT_CHANNEL_TYPE = 23
REASON_DISBAND = 24
REASON_SEND_BAN = 25


class ProtocolError(Exception):
    """Input that is not valid WKProto; ``reason`` is the code to report, ``kind`` a metric label."""

    def __init__(self, message: str, reason: int = REASON_PAYLOAD_DECODE_ERROR, kind: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason
        self.kind = kind


# ------------------------------------------------------------------ packets
@dataclass(slots=True)
class Connect:
    version: int = LATEST_VERSION
    device_flag: int = 0
    device_id: str = ""
    uid: str = ""
    token: str = ""
    client_timestamp: int = 0
    client_key: str = ""
    flags: int = 0
    type: int = CONNECT


@dataclass(slots=True)
class Connack:
    time_diff: int = 0
    reason_code: int = REASON_SUCCESS
    server_key: str = ""
    salt: str = ""
    node_id: int = 0
    server_version: int = 0
    has_server_version: bool = False
    flags: int = 0
    type: int = CONNACK


@dataclass(slots=True)
class Send:
    setting: int = 0
    client_seq: int = 0
    client_msg_no: str = ""
    stream_no: str = ""
    channel_id: str = ""
    channel_type: int = 0
    expire: int = 0
    msg_key: str = ""
    topic: str = ""
    payload: bytes = b""
    flags: int = 0
    type: int = SEND


@dataclass(slots=True)
class Sendack:
    message_id: int = 0
    client_seq: int = 0
    message_seq: int = 0
    reason_code: int = REASON_SUCCESS
    flags: int = 0
    type: int = SENDACK


@dataclass(slots=True)
class Recv:
    setting: int = 0
    msg_key: str = ""
    from_uid: str = ""
    channel_id: str = ""
    channel_type: int = 0
    expire: int = 0
    client_msg_no: str = ""
    stream_flag: int = 0
    stream_no: str = ""
    stream_id: int = 0
    message_id: int = 0
    message_seq: int = 0
    timestamp: int = 0
    topic: str = ""
    payload: bytes = b""
    flags: int = 0
    type: int = RECV


@dataclass(slots=True)
class Recvack:
    message_id: int = 0
    message_seq: int = 0
    flags: int = 0
    type: int = RECVACK


@dataclass(slots=True)
class Ping:
    flags: int = 0
    type: int = PING


@dataclass(slots=True)
class Pong:
    flags: int = 0
    type: int = PONG


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    reason: str = ""
    flags: int = 0
    type: int = DISCONNECT


@dataclass(slots=True)
class Sub:
    setting: int = 0
    sub_no: str = ""
    channel_id: str = ""
    channel_type: int = 0
    action: int = 0
    param: str = ""
    flags: int = 0
    type: int = SUB


@dataclass(slots=True)
class Suback:
    sub_no: str = ""
    channel_id: str = ""
    channel_type: int = 0
    action: int = 0
    reason_code: int = 0
    flags: int = 0
    type: int = SUBACK


@dataclass(slots=True)
class Event:
    id: str = ""
    type_name: str = ""
    timestamp: int = 0
    data: bytes = b""
    flags: int = 0
    type: int = EVENT


Packet = Connect | Connack | Send | Sendack | Recv | Recvack | Ping | Pong | Disconnect | Sub | Suback | Event

# ------------------------------------------------------------------ encoding

_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")
PING_BYTES = bytes([PING << 4])
PONG_BYTES = bytes([PONG << 4])


def encode_varint(n: int) -> bytes:
    """MQTT-style remaining length (0 encodes to no bytes, as WuKongIM's encoder does)."""
    out = bytearray()
    while n > 0:
        digit = n % 128
        n //= 128
        if n > 0:
            digit |= 0x80
        out.append(digit)
    return bytes(out)


def _s(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0x7FFF:
        raise ValueError("string longer than 32767 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _body(p: Packet, version: int) -> bytes:
    out = bytearray()
    t = p.type
    if t == CONNECT:
        out.append(p.version & 0xFF)
        out.append(p.device_flag & 0xFF)
        _s(out, p.device_id)
        _s(out, p.uid)
        _s(out, p.token)
        out += _I64.pack(p.client_timestamp)
        _s(out, p.client_key)
    elif t == CONNACK:
        if p.has_server_version:
            out.append(p.server_version & 0xFF)
        out += _I64.pack(p.time_diff)
        out.append(p.reason_code & 0xFF)
        _s(out, p.server_key)
        _s(out, p.salt)
        if version >= 4:
            out += _U64.pack(p.node_id)
    elif t == SEND:
        out.append(p.setting & 0xFF)
        out += _U32.pack(p.client_seq & 0xFFFFFFFF)
        _s(out, p.client_msg_no)
        if 2 <= version < 5 and p.setting & SETTING_STREAM:
            _s(out, p.stream_no)
        _s(out, p.channel_id)
        out.append(p.channel_type & 0xFF)
        if version >= 3:
            out += _U32.pack(p.expire & 0xFFFFFFFF)
        _s(out, p.msg_key)
        if p.setting & SETTING_TOPIC:
            _s(out, p.topic)
        out += p.payload
    elif t == SENDACK:
        out += _I64.pack(p.message_id)
        out += _U32.pack(p.client_seq & 0xFFFFFFFF)
        out += _U32.pack(p.message_seq & 0xFFFFFFFF)
        out.append(p.reason_code & 0xFF)
    elif t == RECV:
        out.append(p.setting & 0xFF)
        _s(out, p.msg_key)
        _s(out, p.from_uid)
        _s(out, p.channel_id)
        out.append(p.channel_type & 0xFF)
        if version >= 3:
            out += _U32.pack(p.expire & 0xFFFFFFFF)
        _s(out, p.client_msg_no)
        if 2 <= version < 5 and p.setting & SETTING_STREAM:
            out.append(p.stream_flag & 0xFF)
            _s(out, p.stream_no)
            out += _U64.pack(p.stream_id)
        out += _I64.pack(p.message_id)
        out += _U32.pack(p.message_seq & 0xFFFFFFFF)
        out += _I32.pack(p.timestamp)
        if p.setting & SETTING_TOPIC:
            _s(out, p.topic)
        out += p.payload
    elif t == RECVACK:
        out += _I64.pack(p.message_id)
        out += _U32.pack(p.message_seq & 0xFFFFFFFF)
    elif t == DISCONNECT:
        out.append(p.reason_code & 0xFF)
        _s(out, p.reason)
    elif t == SUB:
        out.append(p.setting & 0xFF)
        _s(out, p.sub_no)
        _s(out, p.channel_id)
        out.append(p.channel_type & 0xFF)
        out.append(p.action & 0xFF)
        _s(out, p.param)
    elif t == SUBACK:
        _s(out, p.sub_no)
        _s(out, p.channel_id)
        out.append(p.channel_type & 0xFF)
        out.append(p.action & 0xFF)
        out.append(p.reason_code & 0xFF)
    elif t == EVENT:
        _s(out, p.id)
        _s(out, p.type_name)
        out += _I64.pack(p.timestamp)
        out += p.data
    else:  # pragma: no cover - every packet class is handled above
        raise ValueError(f"cannot encode packet type {t}")
    return bytes(out)


def encode(p: Packet, version: int = LATEST_VERSION) -> bytes:
    """The wire bytes of one packet for a connection at protocol ``version``."""
    if p.type == PING:
        return PING_BYTES
    if p.type == PONG:
        return PONG_BYTES
    body = _body(p, version)
    if len(body) > MAX_REMAINING_LENGTH:
        raise ValueError("packet exceeds the 1 MiB frame limit")
    if p.type == CONNACK:
        flags = FLAG_HAS_SERVER_VERSION if p.has_server_version else 0
    else:
        flags = p.flags & 0x0F
    return bytes([(p.type << 4) | flags]) + encode_varint(len(body)) + body


class RecvTemplate:
    """A RECV for one message and one connection version, less the per-session parts.

    For a group message every recipient's frame differs only in ``msg_key`` and the
    encrypted payload; ``frame(msg_key, payload)`` joins them with the shared bytes,
    which are encoded once (equal to ``encode(Recv(...))`` with the same fields).
    """

    __slots__ = ("first", "setting", "middle")

    def __init__(self, p: Recv, version: int) -> None:
        body = _body(Recv(p.setting, "", p.from_uid, p.channel_id, p.channel_type, p.expire, p.client_msg_no,
                          p.stream_flag, p.stream_no, p.stream_id, p.message_id, p.message_seq, p.timestamp,
                          p.topic, b"", p.flags), version)
        self.first = bytes([(RECV << 4) | (p.flags & 0x0F)])
        self.setting = body[:1]
        self.middle = body[3:]  # after the setting byte and the empty msg_key's length

    def frame(self, msg_key: str, payload: bytes) -> bytes:
        key = msg_key.encode()
        n = 3 + len(key) + len(self.middle) + len(payload)
        if n > MAX_REMAINING_LENGTH:
            raise ValueError("packet exceeds the 1 MiB frame limit")
        return b"".join((self.first, encode_varint(n), self.setting, _U16.pack(len(key)), key, self.middle, payload))


# ------------------------------------------------------------------ decoding


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | memoryview, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def need(self, n: int, what: str) -> int:
        p = self.pos
        if p + n > self.end:
            raise ProtocolError(f"truncated {what}")
        self.pos = p + n
        return p

    def u8(self, what: str) -> int:
        return self.data[self.need(1, what)]

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self.data, self.need(4, what))[0]

    def i32(self, what: str) -> int:
        return _I32.unpack_from(self.data, self.need(4, what))[0]

    def i64(self, what: str) -> int:
        return _I64.unpack_from(self.data, self.need(8, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.data, self.need(8, what))[0]

    def string(self, what: str) -> str:
        n = struct.unpack_from(">h", self.data, self.need(2, what))[0]
        if n < 0:
            raise ProtocolError(f"negative length of {what}")
        p = self.need(n, what)
        try:
            return bytes(self.data[p:p + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not UTF-8") from None

    def rest(self) -> bytes:
        b = bytes(self.data[self.pos:self.end])
        self.pos = self.end
        return b


def decode_body(ptype: int, flags: int, data: bytes | memoryview, start: int, end: int, version: int) -> Packet:
    """Decode one packet body (``data[start:end]``) at protocol ``version``."""
    r = _Reader(data, start, end)
    if ptype == CONNECT:
        return Connect(r.u8("version"), r.u8("device flag"), r.string("device id"), r.string("uid"),
                       r.string("token"), r.i64("client timestamp"), r.string("client key"), flags)
    if ptype == CONNACK:
        has = bool(flags & FLAG_HAS_SERVER_VERSION)
        sv = r.u8("server version") if has else 0
        p = Connack(r.i64("time diff"), r.u8("reason code"), r.string("server key"), r.string("salt"),
                    0, sv, has, flags)
        if version >= 4:
            p.node_id = r.u64("node id")
        return p
    if ptype == SEND:
        p = Send(flags=flags)
        p.setting = r.u8("setting")
        p.client_seq = r.u32("client seq")
        p.client_msg_no = r.string("client msg no")
        if 2 <= version < 5 and p.setting & SETTING_STREAM:
            p.stream_no = r.string("stream no")
        p.channel_id = r.string("channel id")
        p.channel_type = r.u8("channel type")
        if version >= 3:
            p.expire = r.u32("expire")
        p.msg_key = r.string("msg key")
        if p.setting & SETTING_TOPIC:
            p.topic = r.string("topic")
        p.payload = r.rest()
        return p
    if ptype == SENDACK:
        return Sendack(r.i64("message id"), r.u32("client seq"), r.u32("message seq"), r.u8("reason code"), flags)
    if ptype == RECV:
        p = Recv(flags=flags)
        p.setting = r.u8("setting")
        p.msg_key = r.string("msg key")
        p.from_uid = r.string("from uid")
        p.channel_id = r.string("channel id")
        p.channel_type = r.u8("channel type")
        if version >= 3:
            p.expire = r.u32("expire")
        p.client_msg_no = r.string("client msg no")
        if 2 <= version < 5 and p.setting & SETTING_STREAM:
            p.stream_flag = r.u8("stream flag")
            p.stream_no = r.string("stream no")
            p.stream_id = r.u64("stream id")
        p.message_id = r.i64("message id")
        p.message_seq = r.u32("message seq")
        p.timestamp = r.i32("timestamp")
        if p.setting & SETTING_TOPIC:
            p.topic = r.string("topic")
        p.payload = r.rest()
        return p
    if ptype == RECVACK:
        return Recvack(r.i64("message id"), r.u32("message seq"), flags)
    if ptype == DISCONNECT:
        return Disconnect(r.u8("reason code"), r.string("reason"), flags)
    if ptype == SUB:
        return Sub(r.u8("setting"), r.string("sub no"), r.string("channel id"), r.u8("channel type"),
                   r.u8("action"), r.string("param"), flags)
    if ptype == SUBACK:
        return Suback(r.string("sub no"), r.string("channel id"), r.u8("channel type"), r.u8("action"),
                      r.u8("reason code"), flags)
    if ptype == EVENT:
        return Event(r.string("event id"), r.string("event type"), r.i64("timestamp"), r.rest(), flags)
    raise ProtocolError(f"unknown packet type {ptype}", REASON_NOT_SUPPORT_HEADER, "unknown_type")


class FrameDecoder:
    """Turns a byte stream (any split) into packets; keeps partial frames between calls."""

    __slots__ = ("buf", "version", "max_length", "error")

    def __init__(self, version: int = LATEST_VERSION, max_length: int = MAX_REMAINING_LENGTH) -> None:
        self.buf = bytearray()
        self.version = version
        self.max_length = max_length
        self.error: ProtocolError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame waiting for more input."""
        return len(self.buf)

    def feed(self, data: bytes) -> list[Packet]:
        """All complete packets in the stream so far.

        Never raises: the packets before a bad frame are returned and ``error`` is set;
        after that the stream is dead and every later call returns nothing.
        """
        if self.error is not None:
            return []
        if data:
            self.buf += data
        out: list[Packet] = []
        buf = self.buf
        pos = 0
        try:
            while True:
                packet, pos2 = self._parse(buf, pos)
                if packet is None:
                    break
                out.append(packet)
                pos = pos2
        except ProtocolError as exc:
            self.error = exc
        except (struct.error, IndexError, ValueError) as exc:  # defensive: never escape
            self.error = ProtocolError(f"undecodable frame: {exc}")
        if pos:
            del buf[:pos]
        return out

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None when more bytes are needed."""
        packet, pos = self._parse(self.buf, 0)
        if packet is not None:
            del self.buf[:pos]
        return packet

    def _parse(self, buf: bytearray, pos: int) -> tuple[Packet | None, int]:
        n = len(buf)
        if pos >= n:
            return None, pos
        first = buf[pos]
        ptype, flags = first >> 4, first & 0x0F
        if ptype == PING or ptype == PONG:
            return (Ping(flags) if ptype == PING else Pong(flags)), pos + 1
        if ptype < CONNECT or ptype > EVENT:
            raise ProtocolError(f"unknown packet type {ptype}", REASON_NOT_SUPPORT_HEADER, "unknown_type")
        length = 0
        multiplier = 1
        i = pos + 1
        while True:
            if i >= n:
                return None, pos  # the length itself is incomplete
            digit = buf[i]
            length += (digit & 0x7F) * multiplier
            i += 1
            if not digit & 0x80:
                break
            multiplier *= 128
            if i - pos > 4:
                raise ProtocolError("remaining length longer than 4 bytes", kind="malformed")
        if length > self.max_length:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_length} byte limit",
                                kind="oversized")
        end = i + length
        if n < end:
            return None, pos
        view = memoryview(buf)
        try:
            packet = decode_body(ptype, flags, view, i, end, self.version)
        finally:
            view.release()
        return packet, end
