"""Client listeners: raw TCP (gevent StreamServer) and WebSocket (gevent-websocket, any path).

Each accepted connection becomes a transport (``send_binary``, ``send_text``,
``close``) and a ``Session`` of the node's gateway; the listener's greenlet reads the
socket and feeds the bytes to the session. On WebSocket, binary and text messages feed
the same byte stream, and every outbound frame is one WebSocket message (binary for
WKProto, text for JSON-RPC), as WuKongIM's JS SDKs require.

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


def send_all(sock, data: bytes) -> None:
    """Write all of ``data``: one ``send()`` usually takes it all (gevent's ``sendall()``
    first asks the kernel for the socket's buffer size, a system call per write)."""
    n = sock.send(data)
    if n < len(data):
        sock.sendall(memoryview(data)[n:])


def ws_frame_header(opcode: int, n: int) -> bytes:
    """Header of an unmasked, final WebSocket frame (RFC 6455 5.2) carrying ``n`` bytes."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")


class TcpTransport:
    __slots__ = ("sock", "remote")
    kind = "tcp"

    def __init__(self, sock, remote: str) -> None:
        self.sock = sock
        self.remote = remote

    def send_binary(self, data: bytes) -> None:
        send_all(self.sock, data)

    def send_text(self, text: str) -> None:
        send_all(self.sock, text.encode())

    def close(self) -> None:
        try:
            self.sock.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class WsTransport:
    __slots__ = ("ws", "remote")
    kind = "ws"

    def __init__(self, ws, remote: str) -> None:
        self.ws = ws
        self.remote = remote

    def send_binary(self, data: bytes) -> None:
        self._send(0x2, data)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, data: bytes) -> None:
        """One unmasked final frame written straight to the socket (as geventwebsocket would frame it)."""
        ws = self.ws
        if ws.closed:
            raise OSError("websocket closed")
        send_all(ws.handler.socket, ws_frame_header(opcode, len(data)) + data)

    def close(self) -> None:
        try:
            self.ws.close()
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
