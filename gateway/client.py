"""Skein's own WKProto client (binary protocol v1-v5, with WuKongIM's encryption).

Used by the tests and the benchmarks; it speaks exactly what WuKongIM's SDKs speak.
Runs under gevent (sockets must be cooperative): one reader greenlet per client
dispatches CONNACK, SENDACK (matched by client seq), RECV (msgKey checked, payload
decrypted, RECVACK sent), PONG and DISCONNECT.

    c = WKClient("127.0.0.1:5100", "u1", "t1")      # or "ws://127.0.0.1:5200"
    c.connect()
    ack = c.send("u2", 1, b'{"type":1,"content":"hi"}')
    msg = c.recv(timeout=5)                         # a wkproto.Recv, payload decrypted
"""
from __future__ import annotations

import itertools
import os
import socket
import time
import uuid

import gevent
import gevent.event
import gevent.queue

from gateway import wkproto as wk
from gateway.session_crypto import CryptoError, SessionCipher, client_key_pair, derive_aes_key


class ClientError(Exception):
    pass


class ConnectRefused(ClientError):
    def __init__(self, reason: int) -> None:
        super().__init__(f"CONNACK reason {reason}")
        self.reason = reason


class Closed(ClientError):
    pass


class _TcpConn:
    def __init__(self, addr: str, timeout: float) -> None:
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        return self.sock.recv(65536)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _WsConn:
    def __init__(self, url: str, timeout: float) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=timeout, enable_multithread=False)
        self.ws.settimeout(None)

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def recv(self) -> bytes:
        import websocket

        try:
            data = self.ws.recv()
        except websocket.WebSocketConnectionClosedException:
            return b""
        return data.encode() if isinstance(data, str) else data

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class WKClient:
    def __init__(self, addr: str, uid: str, token: str = "", *, device_flag: int = 1, device_id: str | None = None,
                 version: int = wk.LATEST_VERSION, encrypt: bool = True, auto_ack: bool = True,
                 timeout: float = 10.0) -> None:
        self.addr = addr
        self.uid = uid
        self.token = token
        self.device_flag = device_flag
        self.device_id = device_id or uuid.uuid4().hex + "P"
        self.version = version
        self.encrypt = encrypt
        self.auto_ack = auto_ack
        self.timeout = timeout
        self.conn = None
        self.cipher: SessionCipher | None = None
        self.connack: wk.Connack | None = None
        self.messages: gevent.queue.Queue = gevent.queue.Queue()
        self.events: gevent.queue.Queue = gevent.queue.Queue()  # EVENT packets (message events)
        self.disconnects: list[wk.Disconnect] = []
        self.closed = gevent.event.Event()
        self.bad_msg_keys = 0
        self.on_message = None  # optional callable(Recv) instead of queueing
        self._seq = itertools.count(1)
        self._pending: dict[int, gevent.event.AsyncResult] = {}
        self._connack = gevent.event.AsyncResult()
        self._pong = gevent.event.Event()
        self._reader: gevent.Greenlet | None = None
        self._priv = None

    # ------------------------------------------------------------------ connection
    def open(self) -> None:
        if self.addr.startswith(("ws://", "wss://")):
            self.conn = _WsConn(self.addr, self.timeout)
        else:
            self.conn = _TcpConn(self.addr, self.timeout)
        self._reader = gevent.spawn(self._read_loop)

    def connect(self, timeout: float | None = None) -> wk.Connack:
        """Open the connection and authenticate; raises ConnectRefused on a reason other than 1."""
        if self.conn is None:
            self.open()
        self._priv, client_key = client_key_pair()
        self.send_packet(wk.Connect(self.version, self.device_flag, self.device_id, self.uid, self.token,
                                    int(time.time() * 1000), client_key if self.encrypt else ""))
        try:
            ack = self._connack.get(timeout=timeout or self.timeout)
        except gevent.Timeout:
            raise ClientError("no CONNACK") from None
        if ack is None:
            raise Closed("connection closed before CONNACK")
        if ack.reason_code != wk.REASON_SUCCESS:
            raise ConnectRefused(ack.reason_code)
        return ack

    def send_packet(self, p, version: int | None = None) -> None:
        self.send_raw(wk.encode(p, self.version if version is None else version))

    def send_raw(self, data: bytes) -> None:
        if self.conn is None:
            raise Closed("not connected")
        try:
            self.conn.send(data)
        except OSError as exc:
            raise Closed(str(exc)) from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self._reader is not None:
            self._reader.join(timeout=2)
        self.closed.set()

    # ------------------------------------------------------------------ messages
    def send_nowait(self, channel_id: str, channel_type: int, payload: bytes, *, client_msg_no: str | None = None,
                    flags: int = wk.FLAG_RED_DOT, setting: int = 0, expire: int = 0, topic: str = "",
                    client_seq: int | None = None) -> tuple[int, gevent.event.AsyncResult]:
        seq = next(self._seq) if client_seq is None else client_seq
        cmn = client_msg_no or uuid.uuid4().hex
        body = payload
        msg_key = ""
        if self.cipher is not None:
            body = self.cipher.encrypt(payload)
            msg_key = self.cipher.send_msg_key(seq, cmn, channel_id, channel_type, body)
        if topic:
            setting |= wk.SETTING_TOPIC
        ar = gevent.event.AsyncResult()
        self._pending[seq] = ar
        self.send_packet(wk.Send(setting, seq, cmn, "", channel_id, channel_type, expire, msg_key, topic, body, flags))
        return seq, ar

    def send(self, channel_id: str, channel_type: int, payload: bytes, timeout: float | None = None,
             **kw) -> wk.Sendack:
        seq, ar = self.send_nowait(channel_id, channel_type, payload, **kw)
        try:
            ack = ar.get(timeout=timeout or self.timeout)
        except gevent.Timeout:
            self._pending.pop(seq, None)
            raise ClientError(f"no SENDACK for client seq {seq}") from None
        if ack is None:
            raise Closed("connection closed before SENDACK")
        return ack

    def recv(self, timeout: float | None = None) -> wk.Recv:
        try:
            m = self.messages.get(timeout=timeout or self.timeout)
        except gevent.queue.Empty:
            raise ClientError("no message") from None
        if m is None:
            self.messages.put(None)
            raise Closed("connection closed")
        return m

    def ping(self, timeout: float | None = None) -> float:
        self._pong.clear()
        t = time.perf_counter()
        self.send_raw(wk.PING_BYTES)
        if not self._pong.wait(timeout or self.timeout):
            raise ClientError("no PONG")
        return time.perf_counter() - t

    # ------------------------------------------------------------------ reading
    def _read_loop(self) -> None:
        dec = wk.FrameDecoder(self.version)
        try:
            while True:
                data = self.conn.recv()
                if not data:
                    break
                for p in dec.feed(data):
                    self._on_packet(p, dec)
                if dec.error is not None:
                    raise ClientError(f"server sent a bad frame: {dec.error}")
        except (OSError, ClientError):
            pass
        finally:
            if not self._connack.ready():
                self._connack.set(None)
            for ar in self._pending.values():
                if not ar.ready():
                    ar.set(None)
            self.messages.put(None)
            self.closed.set()

    def _on_packet(self, p, dec: wk.FrameDecoder) -> None:
        t = p.type
        if t == wk.CONNACK:
            if p.reason_code == wk.REASON_SUCCESS and self.encrypt and p.server_key:
                key = derive_aes_key(self._priv, p.server_key)
                self.cipher = SessionCipher.from_salt(key, p.salt)
            self.connack = p
            self._connack.set(p)
        elif t == wk.SENDACK:
            ar = self._pending.pop(p.client_seq, None)
            if ar is not None:
                ar.set(p)
        elif t == wk.RECV:
            if self.cipher is not None:
                expect = self.cipher.recv_msg_key(p.message_id, p.message_seq, p.client_msg_no, p.timestamp,
                                                  p.from_uid, p.channel_id, p.channel_type, p.payload)
                if expect != p.msg_key:
                    self.bad_msg_keys += 1  # the JS SDK drops such a message silently
                    return
                try:
                    p.payload = self.cipher.decrypt(p.payload)
                except CryptoError:
                    self.bad_msg_keys += 1
                    return
            if self.auto_ack:
                self.send_packet(wk.Recvack(p.message_id, p.message_seq, p.flags & 0x07))
            if self.on_message is not None:
                self.on_message(p)
            else:
                self.messages.put(p)
        elif t == wk.PONG:
            self._pong.set()
        elif t == wk.EVENT:
            self.events.put(p)
        elif t == wk.DISCONNECT:
            self.disconnects.append(p)


def random_uid(prefix: str = "u") -> str:
    return f"{prefix}{os.urandom(4).hex()}"
