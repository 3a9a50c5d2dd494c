"""The TLS WebSocket listener (``wssAddr``) and the PROXY protocol (``proxyProtocol.*``) on real nodes.

* ``wssAddr`` with a self-signed certificate made here: the official JS SDK 1.0.4 connects
  over ``wss://`` (Node trusts the certificate through ``NODE_EXTRA_CA_CERTS``; verification
  stays on), sends and receives.
* A real haproxy (``send-proxy`` and ``send-proxy-v2``) in front of a node's TCP listener:
  ``/connz`` shows the client's address from the PROXY header (the client binds 127.0.0.x,
  haproxy connects from 127.0.0.1); a connection without the header, or with a malformed one,
  is refused while the proxied clients on the node keep sending and receiving.
* haproxy ``send-proxy-v2`` in TCP mode in front of the other node's ``wssAddr`` (TLS passed
  through, the PROXY header before the handshake): the JS SDK connects through it.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import time

import gevent
import pytest
import websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import wkproto as wk
from gateway.client import ClientError, WKClient, _TcpConn, _WsConn
from tests.support.clients import JS_DIR, LineClient, ensure_js_sdk
from tests.support.ports import free_port
from tests.support.servers import Cluster, NodeProcess, Proc, uniq, wait_until

pytestmark = pytest.mark.cluster


def make_self_signed(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 / localhost (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skein-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "wss.crt"), os.path.join(directory, "wss.key")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


HAPROXY_CFG = """\
global
    log stderr format short local0 info
defaults
    log global
    mode tcp
    timeout connect 4s
    timeout client 1m
    timeout server 1m
frontend tcp_v1
    bind 127.0.0.1:{tcp_v1}
    default_backend tcp_v1
backend tcp_v1
    server node1 127.0.0.1:{node_tcp} send-proxy
frontend tcp_v2
    bind 127.0.0.1:{tcp_v2}
    default_backend tcp_v2
backend tcp_v2
    server node1 127.0.0.1:{node_tcp} send-proxy-v2
frontend ws_v1
    bind 127.0.0.1:{ws_v1}
    default_backend ws_v1
backend ws_v1
    server node2 127.0.0.1:{node2_ws} send-proxy
frontend wss_v2
    bind 127.0.0.1:{wss_v2}
    default_backend wss_v2
backend wss_v2
    server node2 127.0.0.1:{node2_wss} send-proxy-v2
"""


@pytest.fixture(scope="module")
def env():
    c = Cluster(0)
    c.start()
    cert, key = make_self_signed(c.base)
    wss1, wss2 = free_port(), free_port()
    tls = {"wssConfig.certFile": cert, "wssConfig.keyFile": key}
    try:
        # node 1: PROXY header on TCP, plain TLS WebSocket; node 2: PROXY header on the WebSocket listeners
        n1 = c.add_node(1, wait=False, extra={"proxyProtocol.tcp": True, "proxyProtocol.timeout": "2s",
                                              "wssAddr": f"wss://127.0.0.1:{wss1}", **tls})
        n2 = c.add_node(2, wait=False, extra={"proxyProtocol.ws": True, "wssAddr": f"wss://127.0.0.1:{wss2}", **tls})
        # node 3 under gunicorn (the node serves its client ports itself there too)
        wss3 = free_port()
        n3 = NodeProcess(c.base, 3, c.etcd.endpoint, c.redis.url, gunicorn=True,
                         extra={"proxyProtocol.ws": True, "wssAddr": f"wss://127.0.0.1:{wss3}", **tls})
        c.nodes[3] = n3
        n3.start(wait_healthy=False)
        for n in (n1, n2, n3):
            n.wait_healthy(45)
        c.wait_slots_ready()
        ports = {"tcp_v1": free_port(), "tcp_v2": free_port(), "ws_v1": free_port(), "wss_v2": free_port()}
        cfg = os.path.join(c.base, "haproxy.cfg")
        with open(cfg, "w") as fh:
            fh.write(HAPROXY_CFG.format(node_tcp=n1.ports["tcp"], node2_ws=n2.ports["ws"], node2_wss=wss2, **ports))
        lb = Proc(["haproxy", "-db", "-f", cfg], os.path.join(c.base, "haproxy.out"))

        def listening() -> bool:
            assert lb.alive(), lb.output()
            for p in ports.values():
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", p)) != 0:
                        return False
            return True
        wait_until(listening, 15, what="haproxy listening")
        yield {"cluster": c, "n1": n1, "n2": n2, "n3": n3, "wss1": wss1, "wss2": wss2, "wss3": wss3, "cert": cert,
               "lb": ports}
        lb.terminate(10)
    finally:
        c.close()


def tok(node, uid: str) -> str:
    token = "tk-" + uid
    assert node.post("/user/token", {"uid": uid, "token": token, "device_flag": 1, "device_level": 1}) == \
        (200, {"status": 200})
    return token


def js_client(url: str, uid: str, token: str, cert: str) -> LineClient:
    ensure_js_sdk()
    c = LineClient(["node", os.path.join(JS_DIR, "driver.js"), "--url", url, "--uid", uid, "--token", token],
                   cwd=JS_DIR, env={"NODE_EXTRA_CA_CERTS": cert})
    c.cmd(cmd="connect")
    st = c.wait(lambda e: e["event"] == "status" and e.get("reasonCode") not in (None, 0), 20, f"{uid} connects")
    assert st["reasonCode"] == 1, (st, c.stderr[-10:])
    return c


def js_chat(url_a: str, url_b: str, node, cert: str) -> None:
    """Two JS SDK clients: a sends to b, b receives and answers, a receives."""
    a, b = uniq("wa"), uniq("wb")
    ca = js_client(url_a, a, tok(node, a), cert)
    try:
        cb = js_client(url_b, b, tok(node, b), cert)
        try:
            ca.cmd(cmd="send", channelID=b, channelType=1, text="over wss", id="m1")
            ack = ca.wait(lambda e: e["event"] == "sendack", 15, "sendack")
            assert ack["reasonCode"] == 1, ack
            got = cb.wait(lambda e: e["event"] == "message", 15, "b receives")
            assert (got["fromUID"], got["text"]) == (a, "over wss"), got
            cb.cmd(cmd="send", channelID=a, channelType=1, text="back over wss")
            assert cb.wait(lambda e: e["event"] == "sendack", 15, "sendack")["reasonCode"] == 1
            got = ca.wait(lambda e: e["event"] == "message" and e["fromUID"] == b, 15, "a receives")
            assert got["text"] == "back over wss", got
        finally:
            cb.close()
    finally:
        ca.close()


def test_js_sdk_over_wss_sends_and_receives(env) -> None:
    n1 = env["n1"]
    url = f"wss://127.0.0.1:{env['wss1']}"
    st, route = n1.get(f"/route?uid={uniq('r')}")
    assert st == 200 and route["wss_addr"] == url, route
    js_chat(url, url, n1, env["cert"])
    # plain ws on the TLS port is refused (no upgrade happens without the handshake)
    with socket.create_connection(("127.0.0.1", env["wss1"]), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        try:
            answer = s.recv(100)
        except ConnectionResetError:
            answer = b"(reset)"
        print("plain HTTP on the wss port:", answer)
        assert not answer.startswith(b"HTTP/1.1 101")


def test_js_sdk_over_wss_behind_haproxy_send_proxy_v2(env) -> None:
    """PROXY v2 header before the TLS handshake (haproxy passes TLS through); the SDK chats through it."""
    n2 = env["n2"]
    via = f"wss://127.0.0.1:{env['lb']['wss_v2']}"
    js_chat(via, via, n2, env["cert"])
    js_chat(f"ws://127.0.0.1:{env['lb']['ws_v1']}", via, n2, env["cert"])  # plain ws through send-proxy too
    # node 2's wss port itself expects the header: a TLS client straight to it is refused
    ctx = ssl.create_default_context(cafile=env["cert"])
    with socket.create_connection(("127.0.0.1", env["wss2"]), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")


class SourcedConn(_TcpConn):
    """A TCP connection from a chosen loopback address, optionally starting with raw bytes."""

    def __init__(self, addr: str, source: str, prefix: bytes = b"", split: float = 0.0) -> None:
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if prefix and split:
            self.sock.sendall(prefix[:7])
            time.sleep(split)
            self.sock.sendall(prefix[7:])
        elif prefix:
            self.sock.sendall(prefix)
        self.sock.settimeout(None)


class Client(WKClient):
    def __init__(self, addr: str, uid: str, token: str, source: str = "127.0.0.1", prefix: bytes = b"",
                 split: float = 0.0) -> None:
        super().__init__(addr, uid, token, timeout=5)
        self.source, self.prefix, self.split = source, prefix, split

    def open(self) -> None:
        self.conn = SourcedConn(self.addr, self.source, self.prefix, self.split)
        self._reader = gevent.spawn(self._read_loop)

    @property
    def local(self) -> tuple[str, int]:
        return self.conn.sock.getsockname()


def connz(node, uid: str) -> list[dict]:
    st, body = node.get(f"/connz?uid={uid}")
    assert st == 200, body
    return [c for c in body["connections"] if c["uid"] == uid]


def chat(a: Client, b: Client, text: str) -> None:
    ack = a.send(b.uid, 1, json.dumps({"type": 1, "content": text}).encode())
    assert ack.reason_code == wk.REASON_SUCCESS
    m = b.recv(timeout=10)
    assert m.from_uid == a.uid and json.loads(m.payload)["content"] == text


def test_haproxy_send_proxy_shows_the_client_address_and_refuses_connections_without_it(env) -> None:
    n1 = env["n1"]
    lb = env["lb"]
    ua, ub, uc = uniq("pa"), uniq("pb"), uniq("pc")
    a = Client(f"127.0.0.1:{lb['tcp_v1']}", ua, tok(n1, ua), source="127.0.0.7")
    b = Client(f"127.0.0.1:{lb['tcp_v2']}", ub, tok(n1, ub), source="127.0.0.9")
    a.connect()
    b.connect()
    try:
        for c in (a, b):
            rows = connz(n1, c.uid)
            print("/connz behind haproxy:", c.local, [(r["ip"], r["port"]) for r in rows])
            assert [(r["ip"], r["port"]) for r in rows] == [c.local], rows
        chat(a, b, "through send-proxy")
        chat(b, a, "through send-proxy-v2")

        # no header: refused (closed without a CONNACK), the proxied clients unharmed
        direct = Client(f"127.0.0.1:{n1.ports['tcp']}", uc, tok(n1, uc))
        with pytest.raises(ClientError) as exc:
            direct.connect()
        print("without a PROXY header:", repr(exc.value))
        direct.close()
        assert connz(n1, uc) == []

        # malformed headers: each one refused at once (no 2 s timeout), nothing else harmed
        for bad in (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", b"PROXY TCP9 x\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x29\x11\x00\x0c",
                    b"GET / HTTP/1.1\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", n1.ports["tcp"]), timeout=5) as s:
                t0 = time.monotonic()
                s.sendall(bad)
                assert s.recv(100) == b"", bad
                assert time.monotonic() - t0 < 1.9, bad
        # a header that never completes: closed after proxyProtocol.timeout (2 s)
        with socket.create_connection(("127.0.0.1", n1.ports["tcp"]), timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(b"PROXY TCP4 1.2.3.4")
            assert s.recv(100) == b""
            waited = time.monotonic() - t0
            print(f"incomplete header closed after {waited:.2f}s")
            assert 1.5 < waited < 8
        chat(a, b, "still fine")
        chat(b, a, "still fine too")

        # a header sent by hand, split across two reads, then CONNECT: the address in it is the client's
        hdr = b"PROXY TCP6 2001:db8::7 ::1 40123 5100\r\n"
        d = Client(f"127.0.0.1:{n1.ports['tcp']}", uc, tok(n1, uc), prefix=hdr, split=0.3)
        d.connect()
        try:
            assert [(r["ip"], r["port"]) for r in connz(n1, uc)] == [("2001:db8::7", 40123)]
            chat(d, a, "split header")
        finally:
            d.close()
        st, body = n1.get("/metrics", base=n1.manager)
        assert 'skein_gateway_rejected_total{reason="proxy_header"}' in body
    finally:
        a.close()
        b.close()


class HeaderWsConn(_WsConn):
    """A WebSocket (over TLS with ``tls``) whose TCP stream starts with a hand-made PROXY header."""

    def __init__(self, url: str, header: bytes, tls: ssl.SSLContext | None = None) -> None:
        host, _, port = url.split("//", 1)[1].rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(header)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        # a client behind a TCP-mode balancer may write X-Real-IP itself: the PROXY header wins
        self.ws = websocket.create_connection(url, timeout=10, socket=sock, header=["X-Real-IP: 203.0.113.66"])
        self.ws.settimeout(None)


class HeaderWsClient(WKClient):
    def __init__(self, url: str, uid: str, token: str, header: bytes, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(url, uid, token, timeout=5)
        self.header, self.tls = header, tls

    def open(self) -> None:
        self.conn = HeaderWsConn(self.addr, self.header, self.tls)
        self._reader = gevent.spawn(self._read_loop)


V2_198 = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes((198, 51, 100, 9)) + bytes((127, 0, 0, 1))
          + (4343).to_bytes(2, "big") + (5200).to_bytes(2, "big"))


@pytest.mark.parametrize("node", ["n2", "n3"])
def test_ws_and_wss_with_a_proxy_header_show_its_address(env, node) -> None:
    """wsAddr and wssAddr with proxyProtocol.ws, without gunicorn (node 2) and under it (node 3)."""
    n = env[node]
    wss = env["wss2" if node == "n2" else "wss3"]
    tls = ssl.create_default_context(cafile=env["cert"])
    ua, ub = uniq("ha"), uniq("hb")
    a = HeaderWsClient(f"ws://127.0.0.1:{n.ports['ws']}", ua, tok(n, ua), b"PROXY TCP4 198.51.100.7 127.0.0.1 4242 5200\r\n")
    b = HeaderWsClient(f"wss://127.0.0.1:{wss}", ub, tok(n, ub), V2_198, tls)
    a.connect()
    b.connect()
    try:
        assert [(r["ip"], r["port"], r["transport"]) for r in connz(n, ua)] == [("198.51.100.7", 4242, "ws")]
        assert [(r["ip"], r["port"], r["transport"]) for r in connz(n, ub)] == [("198.51.100.9", 4343, "ws")]
        chat(a, b, "ws to wss")
        chat(b, a, "wss to ws")
        # without the header: the WebSocket upgrade never happens
        with pytest.raises((OSError, websocket.WebSocketException)):
            WKClient(f"ws://127.0.0.1:{n.ports['ws']}", ua, "x", timeout=5).connect()
        chat(a, b, "still fine")
    finally:
        a.close()
        b.close()
