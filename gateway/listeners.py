"""Client listeners: raw TCP (gevent StreamServer), and what the WebSocket listeners share.

Each accepted connection becomes a transport and a ``Session`` of the node's gateway;
the listener's greenlet reads the socket and feeds the bytes to the session. A
transport frames what the session writes (``frame``), writes without waiting
(``write_nowait``: one ``sendmsg`` of several queued frames, what the kernel takes now)
or, in the connection's writer greenlet only, waits for the socket (``write_wait``),
and closes without waiting. The WebSocket listeners (``gateway.ws_listener``) use the
same read loop shape, ``Admission`` and PROXY-header reading from here.

The read loops apply the session's admission: while the session is ``paused`` (too
many SENDs pending) they do not read (TCP flow control pushes back on the client) and
wait to be woken; after many refused SENDs they wait ``read_delay()``; they dispatch
the session's backlog before reading more; and they yield to the hub after every
read, so a client that keeps the socket full cannot hold the event loop away from
other connections, the mesh and ``/health``.

With ``proxyProtocol.tcp`` / ``proxyProtocol.ws`` on, a listener first reads the PROXY
header (``gateway.proxy_protocol``) of each connection, within ``proxyProtocol.timeout``,
and the client's address from it is the session's ``remote`` (``/connz``, logs, the
per-IP limit); a connection without a valid header is closed before any session exists.
The WebSocket listeners read it exactly (nothing of the client's own bytes) and, on
``wssAddr``, do the TLS handshake after it.
"""
from __future__ import annotations

import logging
import socket as pysocket

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from gateway import proxy_protocol
from gateway.proxy_protocol import ProxyHeader, ProxyProtocolError
from gateway.session import CLOSED
from mesh.base import metrics
from mesh.base.config import split_hostport

log = logging.getLogger("gateway.listeners")


_DONTWAIT = pysocket.MSG_DONTWAIT


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


def read_proxy_header(sock, timeout: float, exact: bool) -> tuple[ProxyHeader, bytes]:
    """Read a connection's PROXY header: the header and the client's bytes read past it.

    ``exact``: read no byte past the header (the rest stays in the socket). Raises
    ``ProxyProtocolError`` for a malformed header or one not complete within ``timeout``,
    and ``EOFError`` for a connection closed before it (a balancer's TCP health check).
    """
    buf = b""
    with gevent.Timeout(timeout, ProxyProtocolError(f"no complete PROXY header within {timeout:g}s")):
        while True:
            header = proxy_protocol.parse(buf)
            if header is not None:
                return header, buf[header.length:]
            data = sock.recv(proxy_protocol.want(buf) if exact else 65536)
            if not data:
                raise EOFError("closed before a complete PROXY header")
            buf += data


def accept_proxied(sock, peer: str, timeout: float, exact: bool, listener: str) -> tuple[str, bytes] | None:
    """The client's address per the PROXY header and the bytes read past it; None (counted, logged,
    the socket closed) when the connection has no valid header."""
    try:
        header, rest = read_proxy_header(sock, timeout, exact)
    except EOFError:
        log.debug("%s connection from %s closed before a PROXY header", listener, peer)
    except ProxyProtocolError as exc:
        metrics.gw_rejected.labels("proxy_header").inc()
        log.warning("%s connection from %s refused: %s", listener, peer, exc)
    except OSError as exc:
        log.debug("%s connection from %s failed before a PROXY header: %s", listener, peer, exc)
    else:
        remote = header.remote(peer)
        log.debug("%s connection from %s: PROXY v%d %s, client %s", listener, peer, header.version, header.command,
                  remote)
        return remote, rest
    try:
        sock.close()
    except OSError:
        pass
    return None


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
    proxied = node.cfg["proxyProtocol.tcp"]
    proxy_timeout = node.cfg["proxyProtocol.timeout"]

    def handle(sock, addr):
        try:
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        except OSError:
            pass
        remote, rest = f"{addr[0]}:{addr[1]}", b""
        if proxied:
            got = accept_proxied(sock, remote, proxy_timeout, False, "tcp")
            if got is None:
                return
            remote, rest = got
        session = gw.open(TcpTransport(sock, remote))
        if session is None:
            sock.close()
            return
        try:
            recv = sock.recv
            admit = Admission(session)
            if rest:
                session.feed(rest)
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
