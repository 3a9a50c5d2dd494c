"""Client listeners: raw TCP (gevent StreamServer) and WebSocket (gevent-websocket, any path).

Each accepted connection becomes a transport and a ``Session`` of the node's gateway;
the listener's greenlet reads the socket and feeds the bytes to the session. A
transport frames what the session writes (``frame``), writes without waiting
(``write_nowait``: one ``sendmsg`` of several queued frames, what the kernel takes now)
or, in the connection's writer greenlet only, waits for the socket (``write_wait``),
and closes without waiting. On WebSocket, binary and text messages feed the same byte
stream, and every outbound frame is one WebSocket message (binary for WKProto, text
for JSON-RPC), as WuKongIM's JS SDKs require.

The read loops apply the session's admission: while the session is ``paused`` (too
many SENDs pending) they do not read (TCP flow control pushes back on the client) and
wait to be woken; after many refused SENDs they wait ``read_delay()``; they dispatch
the session's backlog before reading more; and they yield to the hub after every
read, so a client that keeps the socket full cannot hold the event loop away from
other connections, the mesh and ``/health``.
"""
from __future__ import annotations

import logging
import socket as pysocket

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from gateway.session import CLOSED
from mesh.base import metrics
from mesh.base.config import split_hostport

log = logging.getLogger("gateway.listeners")


_DONTWAIT = pysocket.MSG_DONTWAIT
_WS_CLOSE = b"\x88\x02\x03\xe8"  # close frame, status 1000


def ws_frame_header(opcode: int, n: int) -> bytes:
    """Header of an unmasked, final WebSocket frame (RFC 6455 5.2) carrying ``n`` bytes."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")


def write_nowait(sock, buffers) -> int:
    """Write what the kernel takes now of ``buffers`` in one ``sendmsg`` (0 when it takes nothing)."""
    try:
        return sock.sendmsg(buffers, (), _DONTWAIT)
    except BlockingIOError:
        return 0


class TcpTransport:
    """A raw TCP client: frames are written back to back (several in one ``sendmsg``)."""

    __slots__ = ("sock", "remote")
    kind = "tcp"
    goodbye = b""

    def __init__(self, sock, remote: str) -> None:
        self.sock = sock
        self.remote = remote

    @staticmethod
    def frame(data, text: bool) -> bytes:
        return data.encode() if isinstance(data, str) else data

    def write_nowait(self, buffers) -> int:
        return write_nowait(self.sock, buffers)

    def write_wait(self, buffers) -> int:
        """Wait (this greenlet only) until the socket takes some of ``buffers``."""
        return self.sock.sendmsg(buffers)

    def close(self) -> None:
        try:
            self.sock.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class WsTransport:
    """A WebSocket client: every frame is its own WebSocket message (binary for WKProto, text for
    JSON-RPC), written straight to the socket as gevent-websocket would frame it; several
    messages may share one ``sendmsg``."""

    __slots__ = ("ws", "remote", "sock")
    kind = "ws"
    goodbye = _WS_CLOSE

    def __init__(self, ws, remote: str) -> None:
        self.ws = ws
        self.remote = remote
        self.sock = ws.handler.socket

    @staticmethod
    def frame(data, text: bool) -> bytes:
        if isinstance(data, str):
            data = data.encode()
        return ws_frame_header(0x1 if text else 0x2, len(data)) + data

    def write_nowait(self, buffers) -> int:
        if self.ws.closed:
            raise OSError("websocket closed")
        return write_nowait(self.sock, buffers)

    def write_wait(self, buffers) -> int:
        if self.ws.closed:
            raise OSError("websocket closed")
        return self.sock.sendmsg(buffers)

    def close(self) -> None:
        """Never waits: the close frame went out through the session's buffer (``goodbye``)."""
        try:
            self.sock.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.ws.close()  # the socket is shut: marks it closed without waiting on anything
        except Exception:
            pass


class Admission:
    """The read side of a session's admission, for one listener loop (see the module doc)."""

    __slots__ = ("session", "event")

    def __init__(self, session) -> None:
        self.session = session
        self.event = Event()
        session.on_resume = self.event.set

    def ready(self) -> bool:
        """Wait until the session may read again (its backlog dispatched); False once it is closed."""
        s = self.session
        counted = False
        while s.state != CLOSED:
            gevent.sleep(s.read_delay())  # 0: just let the other greenlets run
            if s.paused:
                if not counted:
                    metrics.gw_reads_paused.inc()
                    counted = True
                self.event.clear()
                if s.paused:
                    self.event.wait(1.0)
                continue
            if s.backlog:
                s.resume()  # may pause or throttle again
                continue
            return True
        return False


def start_tcp_listener(node) -> StreamServer:
    host, port = split_hostport(node.cfg["tcpAddr"])
    gw = node.gateway

    def handle(sock, addr):
        try:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        except OSError:
            pass
        session = gw.open(TcpTransport(sock, f"{addr[0]}:{addr[1]}"))
        if session is None:
            sock.close()
            return
        try:
            recv = sock.recv
            admit = Admission(session)
            while admit.ready():
                data = recv(65536)
                if not data:
                    break
                session.feed(data)
                if session.state == CLOSED:
                    break
        except OSError:
            pass
        finally:
            session.close("peer closed")

    server = StreamServer((host, port), handle, backlog=4096)
    server.start()
    return server


def create_ws_app(node):
    gw = node.gateway

    def app(environ, start_response):
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"WebSocket upgrade required\n"]
        remote = environ.get("HTTP_X_REAL_IP") or environ.get("REMOTE_ADDR", "")
        session = gw.open(WsTransport(ws, f"{remote}:{environ.get('REMOTE_PORT', '')}"))
        if session is None:
            ws.close()
            return []
        try:
            admit = Admission(session)
            while admit.ready():
                msg = ws.receive()
                if msg is None:
                    break
                session.feed(msg.encode() if isinstance(msg, str) else msg)
                if session.state == CLOSED:
                    break
        except Exception as exc:
            log.debug("websocket read ended: %s", exc)
        finally:
            session.close("peer closed")
        return []

    return app
