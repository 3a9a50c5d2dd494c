"""WuKongIM's JSON-RPC 2.0 dialect of the client protocol: stream decoding and message shapes.

A connection whose first non-space byte is ``{`` speaks JSON-RPC (reference §2.2):
a stream of JSON objects, back to back, with no delimiter. ``JsonStreamDecoder`` cuts
the stream into objects with a small brace scanner that survives any split of the
bytes (braces inside strings and escapes are skipped), so an object arriving in
pieces is decoded once it is complete. Pure code, no I/O.

Methods (client -> server): ``connect``, ``send``, ``recvack`` (notification),
``ping``, ``disconnect``. Notifications (server -> client): ``recv``, ``disconnect``.
Payloads are base64 strings; connections in this dialect are never encrypted.
"""
from __future__ import annotations

import json
from typing import Any

MAX_OBJECT = 1024 * 1024

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class JsonRpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class JsonStreamDecoder:
    """Splits a byte stream into JSON objects."""

    __slots__ = ("buf", "scanned", "depth", "in_string", "escape", "start", "error")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf already scanned
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.start = -1  # where the current object began
        self.error: JsonRpcError | None = None

    @property
    def pending(self) -> int:
        return len(self.buf)

    def feed(self, data: bytes) -> list[Any]:
        """Complete objects so far; never raises (sets ``error`` and stops on bad input)."""
        if self.error is not None:
            return []
        self.buf += data
        out: list[Any] = []
        buf = self.buf
        i = self.scanned
        n = len(buf)
        consumed = 0
        while i < n:
            c = buf[i]
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif c == 0x5C:  # backslash
                    self.escape = True
                elif c == 0x22:  # quote
                    self.in_string = False
            elif self.depth == 0:
                if c in (0x20, 0x09, 0x0A, 0x0D):
                    consumed = i + 1
                elif c == 0x7B:  # {
                    self.depth = 1
                    self.start = i
                else:
                    self.error = JsonRpcError(PARSE_ERROR, f"expected '{{' at byte {i}, got {chr(c)!r}")
                    break
            elif c == 0x22:
                self.in_string = True
            elif c == 0x7B:
                self.depth += 1
            elif c == 0x7D:  # }
                self.depth -= 1
                if self.depth == 0:
                    raw = bytes(buf[self.start:i + 1])
                    try:
                        obj = json.loads(raw)
                    except (ValueError, RecursionError) as exc:
                        self.error = JsonRpcError(PARSE_ERROR, f"invalid JSON: {exc}")
                        break
                    out.append(obj)
                    consumed = i + 1
                    self.start = -1
            i += 1
            if self.depth and i - self.start > MAX_OBJECT:
                self.error = JsonRpcError(PARSE_ERROR, f"JSON object larger than {MAX_OBJECT} bytes")
                break
        if consumed:
            del buf[:consumed]
            i -= consumed
            if self.start >= 0:
                self.start -= consumed
        self.scanned = i
        return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def response(req_id: Any, result: Any) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def error_response(req_id: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}


def notification(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params}


HEADER_BITS = (("noPersist", 0x01), ("redDot", 0x02), ("syncOnce", 0x04), ("dup", 0x08))
SETTING_BITS = (("receipt", 0x80), ("signal", 0x20), ("topic", 0x08), ("stream", 0x02))


def _to_dict(value: int, bits) -> dict:
    """Only the set bits, as WuKongIM's omitempty JSON does."""
    return {name: True for name, bit in bits if value & bit}


def _to_int(obj, bits) -> int:
    if not isinstance(obj, dict):
        return 0
    return sum(bit for name, bit in bits if obj.get(name))


def header_dict(flags: int) -> dict:
    return _to_dict(flags, HEADER_BITS)


def header_flags(header) -> int:
    return _to_int(header, HEADER_BITS)


def setting_dict(setting: int) -> dict:
    return _to_dict(setting, SETTING_BITS)


def setting_byte(setting) -> int:
    return _to_int(setting, SETTING_BITS)
