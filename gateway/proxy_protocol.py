"""The PROXY protocol header (haproxy's ``send-proxy`` v1 and ``send-proxy-v2``), pure.

A load balancer that passes client connections through at the TCP level puts one
header in front of the client's bytes naming the client's real address. This module
decides, from the bytes received so far, whether the header is complete, still
incomplete, or malformed, and what it says; the listeners (``gateway.listeners``) do
the reading, the timeout and the refusing. No sockets, no gevent, no clock.

* v1: ``PROXY TCP4|TCP6|UNKNOWN <src> <dst> <sport> <dport>\\r\\n``, at most 107 bytes;
  ``UNKNOWN`` carries no usable address (the rest of its line is ignored).
* v2: a 12-byte signature, a version/command byte (``0x20`` LOCAL, ``0x21`` PROXY), a
  family/transport byte, a 16-bit length and that many bytes: the addresses (12 bytes
  for IPv4, 36 for IPv6, 216 for UNIX) followed by TLVs, which are skipped. LOCAL (the
  balancer's own health check) and the UNSPEC and UNIX families carry no client address.

A header without a client address (``ProxyHeader.src is None``) means "use the
connection's own peer address". ``want`` says how many bytes can be read without
reading past the header, so a reader that must not consume the client's own bytes
(the WebSocket listener, which hands the socket to an HTTP parser) can read exactly.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # bytes of the longest v1 line, CRLF included
V1_MIN = 15  # "PROXY UNKNOWN\r\n"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/transport, length
_V2_ADDR_LEN = {0x1: 12, 0x2: 36, 0x3: 216}  # INET, INET6, UNIX


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY header (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    length: int  # bytes of the header: the client's own bytes start after them
    src: tuple[str, int] | None = None  # the client's address, None: use the socket's peer
    dst: tuple[str, int] | None = None  # the address the client connected to (the balancer's)
    command: str = "PROXY"  # "PROXY", or "LOCAL" (v2 health checks)
    family: str = ""  # "TCP4", "TCP6", "UNKNOWN" (v1); "INET", "INET6", "UNIX", "UNSPEC" (v2)

    def remote(self, fallback: str) -> str:
        """``host:port`` of the client as the listeners write it, or ``fallback`` without an address."""
        if self.src is None:
            return fallback
        return f"{self.src[0]}:{self.src[1]}"


def _is_prefix(buf: bytes, full: bytes) -> bool:
    n = min(len(buf), len(full))
    return buf[:n] == full[:n]


def want(buf: bytes) -> int:
    """How many more bytes may be read without reading past the header (at least 1).

    Call it with the bytes received so far while ``parse`` returns None.
    """
    n = len(buf)
    if n >= len(V2_SIG) and buf.startswith(V2_SIG):
        if n < V2_FIXED:
            return V2_FIXED - n
        return max(1, V2_FIXED + int.from_bytes(buf[14:16], "big") - n)
    if n < len(V2_SIG) and _is_prefix(buf, V2_SIG) and not _is_prefix(buf, V1_PREFIX):
        return V2_FIXED - n
    return max(1, V1_MIN - n)  # v1 (or garbage, which parse refuses): byte by byte to the CRLF


def parse(buf: bytes) -> ProxyHeader | None:
    """The header at the start of ``buf``; None while it is incomplete.

    Raises ``ProxyProtocolError`` as soon as the bytes cannot be the start of a valid
    header (a client that sends no header fails on its first byte or so).
    """
    if not buf:
        return None
    if _is_prefix(buf, V1_PREFIX) and (len(buf) < len(V2_SIG) or not buf.startswith(V2_SIG)):
        if len(buf) < len(V1_PREFIX):
            return None
        return _parse_v1(buf)
    if _is_prefix(buf, V2_SIG):
        if len(buf) < V2_FIXED:
            return None
        return _parse_v2(buf)
    raise ProxyProtocolError(f"no PROXY header (starts with {bytes(buf[:8])!r})")


def _parse_v1(buf: bytes) -> ProxyHeader | None:
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        bad = buf.find(b"\n", 0, V1_MAX)
        if bad >= 0:
            raise ProxyProtocolError("v1 line ends without CR")
        if len(buf) >= V1_MAX:
            raise ProxyProtocolError(f"v1 line longer than {V1_MAX} bytes")
        return None
    line = bytes(buf[len(V1_PREFIX):end])
    length = end + 2
    if line == b"UNKNOWN" or line.startswith(b"UNKNOWN "):
        return ProxyHeader(1, length, family="UNKNOWN")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1 line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) != 5:
        raise ProxyProtocolError(f"v1 line has {len(parts)} fields after PROXY, expected 5")
    proto, src, dst, sport, dport = parts
    if proto not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"v1 protocol {proto!r} is not TCP4, TCP6 or UNKNOWN")
    version = 4 if proto == "TCP4" else 6
    return ProxyHeader(1, length, (_ip(src, version), _port(sport)), (_ip(dst, version), _port(dport)),
                       family=proto)


def _ip(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 address {text!r} is not an IP address") from None
    if addr.version != version:
        raise ProxyProtocolError(f"v1 address {text!r} is not IPv{version}")
    return str(addr)


def _port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"v1 port {text!r} is not a decimal port")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"v1 port {port} out of range")
    return port


def _parse_v2(buf: bytes) -> ProxyHeader | None:
    ver_cmd, fam = buf[12], buf[13]
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"v2 version {ver_cmd >> 4} is not 2")
    cmd = ver_cmd & 0x0F
    if cmd not in (0, 1):
        raise ProxyProtocolError(f"v2 command {cmd} is neither LOCAL nor PROXY")
    family, transport = fam >> 4, fam & 0x0F
    if family > 3 or transport > 2:
        raise ProxyProtocolError(f"v2 family/transport byte 0x{fam:02x} is not defined")
    size = int.from_bytes(buf[14:16], "big")
    length = V2_FIXED + size
    if len(buf) < length:
        return None
    if cmd == 0:  # LOCAL: the balancer speaks for itself, the addresses (if any) are ignored
        return ProxyHeader(2, length, command="LOCAL", family="UNSPEC")
    if family == 0:
        return ProxyHeader(2, length, family="UNSPEC")
    need = _V2_ADDR_LEN[family]
    if size < need:
        raise ProxyProtocolError(f"v2 length {size} is shorter than the {need} address bytes")
    if transport == 2:
        raise ProxyProtocolError("v2 header is for a datagram connection")
    if family == 3:
        return ProxyHeader(2, length, family="UNIX")
    body = bytes(buf[V2_FIXED:V2_FIXED + need])
    n = 4 if family == 1 else 16
    src = str(ipaddress.ip_address(body[:n]))
    dst = str(ipaddress.ip_address(body[n:2 * n]))
    sport = int.from_bytes(body[2 * n:2 * n + 2], "big")
    dport = int.from_bytes(body[2 * n + 2:2 * n + 4], "big")
    return ProxyHeader(2, length, (src, sport), (dst, dport), family="INET" if family == 1 else "INET6")
