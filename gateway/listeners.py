"""Client listeners: raw TCP (gevent StreamServer) and WebSocket (gevent-websocket).

Both hand each new connection to the node's gateway as a byte-stream transport.
Until the protocol layer is attached, a connection is held until the CONNECT
deadline and then closed.
"""
from __future__ import annotations

import logging

import gevent
from gevent.server import StreamServer

from mesh.config import split_hostport

log = logging.getLogger("gateway.listeners")


def start_tcp_listener(node) -> StreamServer:
    host, port = split_hostport(node.cfg["tcpAddr"])
    timeout = node.cfg["conn.authTimeout"]

    def handle(sock, addr):
        try:
            with gevent.Timeout(timeout, False):
                while sock.recv(4096):
                    pass
        finally:
            sock.close()

    server = StreamServer((host, port), handle, backlog=4096)
    server.start()
    return server


def create_ws_app(node):
    timeout = node.cfg["conn.authTimeout"]

    def app(environ, start_response):
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"WebSocket upgrade required\n"]
        with gevent.Timeout(timeout, False):
            while ws.receive() is not None:
                pass
        ws.close()
        return []

    return app
