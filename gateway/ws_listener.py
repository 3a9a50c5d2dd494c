"""The WebSocket client listeners (``wsAddr``, ``wssAddr``): the socket I/O around ``gateway.websocket``.

Each connection is one greenlet of a gevent ``StreamServer``, as on raw TCP: it reads
the PROXY header (``proxyProtocol.ws``), does the TLS handshake (``wssAddr``), reads the
upgrade request and answers it (``gateway.websocket.handshake``; a plain HTTP request
gets 400, within ``HANDSHAKE_TIMEOUT``), and then reads the socket in large chunks:
``FrameReader`` turns them into whole messages, fed to the session as one byte stream
(binary and text alike). Pings are answered through the session's outbound buffer, so
a pong never interleaves with a frame being written; a close frame or a protocol fault
closes the session (its ``goodbye`` is the close frame).

The node serves these ports itself, with or without gunicorn: gevent-websocket's
handler read each frame with several small reads and kept a WSGI request (environ,
buffered reader, a deep greenlet stack) alive for the life of every connection.
"""
from __future__ import annotations

import logging
import socket as pysocket

import gevent
from gevent import ssl as gssl
from gevent.server import StreamServer

from gateway import jsonrpc
from gateway import websocket as wsp
from gateway import wkproto as wk
from gateway.listeners import Admission, TcpTransport, accept_proxied
from gateway.session import CLOSED
from mesh.base import metrics
from mesh.base.config import split_hostport

log = logging.getLogger("gateway.ws_listener")

HANDSHAKE_TIMEOUT = 10.0  # TLS handshake, then the whole upgrade request, each
# one client message: a whole WKProto packet or JSON-RPC object (the session's decoders' own limits)
MAX_MESSAGE = max(wk.MAX_REMAINING_LENGTH + 5, jsonrpc.MAX_OBJECT)
READ_SIZE = 65536
_GOODBYE = wsp.close_frame(wsp.CLOSE_NORMAL)


class WsTransport(TcpTransport):
    """A WebSocket client: every frame is its own WebSocket message (binary for WKProto, text for
    JSON-RPC), as WuKongIM's JS SDKs require; several messages may share one ``sendmsg``. Once
    closed, the socket raises on every write, as on TCP."""

    __slots__ = ("goodbye",)
    kind = "ws"

    def __init__(self, sock, remote: str) -> None:
        super().__init__(sock, remote)
        self.goodbye = _GOODBYE  # what the session writes last when it closes

    @staticmethod
    def frame(data, text: bool) -> bytes:
        if isinstance(data, str):
            data = data.encode()
        return wsp.frame_header(wsp.OP_TEXT if text else wsp.OP_BINARY, len(data)) + data


class TlsWsTransport(WsTransport):
    """A WebSocket client over TLS (``wssAddr``): a TLS socket cannot ``sendmsg`` nor take part of a
    record and come back later with other bytes, so nothing is written without waiting: every frame
    goes to the session's writer greenlet, which writes whole batches."""

    __slots__ = ()

    def write_nowait(self, buffers) -> int:
        return 0

    def write_wait(self, buffers) -> int:
        data = b"".join(buffers)
        self.sock.sendall(data)
        return len(data)


def _refuse(sock, peer: str, why: str, response: bytes = b"") -> None:
    metrics.gw_rejected.labels("ws_handshake").inc()
    log.info("websocket connection from %s refused: %s", peer, why)
    try:
        if response:
            sock.sendall(response)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def read_upgrade(sock, peer: str) -> tuple[wsp.Request, bytes] | None:
    """Read and answer the upgrade request; the request and the bytes after it, or None (refused)."""
    buf = b""
    try:
        with gevent.Timeout(HANDSHAKE_TIMEOUT, TimeoutError(f"no upgrade request within {HANDSHAKE_TIMEOUT:g}s")):
            while True:
                end = wsp.request_end(buf)
                if end >= 0:
                    break
                if len(buf) > wsp.MAX_REQUEST_BYTES:
                    _refuse(sock, peer, "upgrade request too large", wsp.REQUEST_TOO_LARGE)
                    return None
                data = sock.recv(8192)
                if not data:
                    sock.close()
                    return None
                buf += data
            req = wsp.parse_request(buf[:end])
            sock.sendall(wsp.handshake(req))
    except wsp.HandshakeError as exc:
        _refuse(sock, peer, exc.reason, exc.response)
        return None
    except OSError as exc:  # a timeout, a reset
        _refuse(sock, peer, f"upgrade request not read: {exc or type(exc).__name__}")
        return None
    return req, buf[end:]


class ClientWsServer(StreamServer):
    """One WebSocket listener of the gateway (see the module doc)."""

    def __init__(self, addr, gw, proxied: bool, proxy_timeout: float | None, tls=None) -> None:
        super().__init__(addr, backlog=4096)
        self.gw = gw
        self.proxied = proxied
        self.proxy_timeout = proxy_timeout
        self.tls = tls
        self.listener_name = "wss" if tls is not None else "ws"

    def handle(self, sock, address) -> None:
        peer = f"{address[0]}:{address[1]}"
        try:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        except OSError:
            pass
        remote = peer
        if self.proxy_timeout is not None:
            got = accept_proxied(sock, peer, self.proxy_timeout, True, self.listener_name)
            if got is None:
                return
            remote = got[0]
        if self.tls is not None:
            try:
                sock.settimeout(HANDSHAKE_TIMEOUT)
                sock = self.tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset
                metrics.gw_rejected.labels("tls_handshake").inc()
                log.info("wss connection from %s: TLS handshake failed: %s", peer, exc)
                try:
                    sock.close()
                except OSError:
                    pass
                return
        got_req = read_upgrade(sock, peer)
        if got_req is None:
            return
        req, rest = got_req
        if not self.proxied:
            real_ip = req.headers.get("x-real-ip")
            if real_ip:
                remote = f"{real_ip}:{remote.rpartition(':')[2]}"
        transport = TlsWsTransport if self.tls is not None else WsTransport
        session = self.gw.open(transport(sock, remote))
        if session is None:
            try:
                sock.sendall(_GOODBYE)
            except OSError:
                pass
            sock.close()
            return
        self._serve(sock, session, rest)

    @staticmethod
    def _serve(sock, session, rest: bytes) -> None:
        reader = wsp.FrameReader(MAX_MESSAGE)
        why = "peer closed"
        try:
            recv = sock.recv
            admit = Admission(session)
            data = rest
            while True:
                if data:
                    messages = []
                    closing = False
                    for item in reader.feed(data):
                        if type(item) is not tuple:
                            messages.append(item)
                        elif item[0] == wsp.PING:
                            session.write_bytes(wsp.pong_frame(item[1]))
                        else:  # CLOSE: session.close below answers with the close frame
                            closing = True
                            break
                    if messages:  # one byte stream to the session, as on TCP (a lone message is not copied)
                        session.feed(b"".join(messages))
                    if closing or session.state == CLOSED:
                        return
                if not admit.ready():
                    return
                data = recv(READ_SIZE)
                if not data:
                    return
        except wsp.WsError as exc:
            why = f"websocket protocol error {exc.code}: {exc.reason}"
            session.transport.goodbye = wsp.close_frame(exc.code)
        except OSError:
            pass
        finally:
            session.close(why)


def start_ws_server(addr: str, gw, proxied: bool = False, proxy_timeout: float | None = None,
                    tls=None) -> ClientWsServer:
    """Serve the WebSocket gateway on ``addr`` (``tls``: a server ``SSLContext`` for ``wssAddr``)."""
    host, port = split_hostport(addr)
    server = ClientWsServer((host, port), gw, proxied, proxy_timeout, tls)
    server.start()
    return server


def tls_context(cert_file: str, key_file: str):
    """The server TLS context of ``wssAddr`` (raises when the files do not load)."""
    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
