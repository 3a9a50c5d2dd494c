"""Client listeners: raw TCP (gevent StreamServer) and WebSocket (gevent-websocket, any path).

Each accepted connection becomes a transport (``send_binary``, ``send_text``,
``close``) and a ``Session`` of the node's gateway; the listener's greenlet reads the
socket and feeds the bytes to the session. On WebSocket, binary and text messages feed
the same byte stream, and every outbound frame is one WebSocket message (binary for
WKProto, text for JSON-RPC), as WuKongIM's JS SDKs require.
"""
from __future__ import annotations

import logging
import socket as pysocket

from gevent.server import StreamServer

from gateway.session import CLOSED
from mesh.config import split_hostport

log = logging.getLogger("gateway.listeners")


class TcpTransport:
    __slots__ = ("sock", "remote")
    kind = "tcp"

    def __init__(self, sock, remote: str) -> None:
        self.sock = sock
        self.remote = remote

    def send_binary(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.sock.sendall(text.encode())

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
        self.ws.send(data, binary=True)

    def send_text(self, text: str) -> None:
        self.ws.send(text, binary=False)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


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
            while True:
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
            while True:
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
