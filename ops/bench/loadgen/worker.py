"""One load-generator process: many WKProto connections in one gevent loop.

Reads its assignment as JSON on stdin (connections to open, what each one sends, at
which rate, for how long), prints ``{"event": "ready"}`` once every connection has its
CONNACK, waits for a ``go`` line, runs, and prints its results as one JSON line:
SENDACK latencies, end-to-end delivery latencies (the send time travels in the
client_msg_no, so receivers need not decrypt), counts and errors.

Connections speak WKProto v5 with WuKongIM's encryption, like the SDKs; each is a
raw socket with one reader greenlet that answers RECVs with RECVACKs, batched per read.
A connection with ``ws`` set speaks the same over WebSocket (one binary frame per
packet, as the JS SDK sends them).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

from gateway import wkproto as wk  # noqa: E402
from gateway.session_crypto import SessionCipher, client_key_pair, derive_aes_key  # noqa: E402
from ops.bench.loadgen.harness import (  # noqa: E402
    measure,
    open_all,
    parse_frames,
    ready_then_wait,
    send_loop,
    ws_frame,
    ws_upgrade,
)
from ops.bench.loadgen.stats import Histogram  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.sendack = Histogram()
        self.e2e = Histogram()
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.delivered = 0
        self.errors: dict[str, int] = {}
        self.measuring = False
        self.window: tuple[float, float] | None = None

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Conn:
    def __init__(self, host: str, port: int, uid: str, token: str, stats: Stats, encrypt: bool = True,
                 ws: bool = False) -> None:
        self.host, self.port, self.uid, self.token = host, port, uid, token
        self.ws = ws
        self.stats = stats
        self.encrypt = encrypt
        self.sock: socket.socket | None = None
        self.cipher: SessionCipher | None = None
        self.seq = itertools.count(1)
        self.pending: dict[int, float] = {}
        self.connack = gevent.event.AsyncResult()
        self.inflight = 0
        self.slot_free = gevent.event.Event()
        self.closed = False

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rest = ws_upgrade(self.sock, self.host, self.port) if self.ws else b""
        self.sock.settimeout(None)
        priv, pub = client_key_pair()
        self._write(wk.encode(wk.Connect(5, 1, self.uid + "-bench", self.uid, self.token,
                                         int(time.time() * 1000), pub if self.encrypt else "")))
        gevent.spawn(self._reader, rest)
        ack = self.connack.get(timeout=30)
        if ack is None or ack.reason_code != 1:
            raise ConnectionError(f"CONNACK {ack.reason_code if ack else 'none'} for {self.uid}")
        if self.encrypt and ack.server_key:
            self.cipher = SessionCipher.from_salt(derive_aes_key(priv, ack.server_key), ack.salt)

    def send(self, channel: str, ctype: int, body: bytes) -> None:
        seq = next(self.seq)
        now = time.time()
        cmn = f"{time.time_ns()}-{seq}"
        payload = body
        key = ""
        if self.cipher is not None:
            payload = self.cipher.encrypt(body)
            key = self.cipher.send_msg_key(seq, cmn, channel, ctype, payload)
        self.pending[seq] = now
        self.inflight += 1
        self.stats.sent += 1
        try:
            self._write(wk.encode(wk.Send(0, seq, cmn, "", channel, ctype, 0, key, "", payload, wk.FLAG_RED_DOT)))
        except OSError:
            self.stats.error("send_failed")
            self.closed = True

    def _frame(self, packet: bytes) -> bytes:
        return ws_frame(packet, 0x2) if self.ws else packet

    def _write(self, packet: bytes) -> None:
        self.sock.sendall(self._frame(packet))

    def _packets(self, dec: wk.FrameDecoder, wsbuf: bytearray, data: bytes) -> list:
        if not self.ws:
            return dec.feed(data)
        wsbuf += data
        out = []
        for op, body in parse_frames(wsbuf):
            if op == 0x2:
                out.extend(dec.feed(body))
            elif op == 0x8:
                raise OSError("closed by the server")
        return out

    def _reader(self, first: bytes = b"") -> None:
        dec = wk.FrameDecoder(5)
        st = self.stats
        wsbuf = bytearray()
        try:
            data = first
            while True:
                if not data:
                    data = self.sock.recv(262144)
                    if not data:
                        break
                acks = []
                now = time.time()
                packets, data = self._packets(dec, wsbuf, data), b""
                for p in packets:
                    t = p.type
                    if t == wk.RECV:
                        acks.append(wk.encode(wk.Recvack(p.message_id, p.message_seq, p.flags & 0x07)))
                        if st.measuring:
                            st.delivered += 1
                            try:
                                st.e2e.add(now - int(p.client_msg_no.split("-", 1)[0]) / 1e9)
                            except ValueError:
                                pass
                    elif t == wk.SENDACK:
                        sent_at = self.pending.pop(p.client_seq, None)
                        self.inflight -= 1
                        self.slot_free.set()
                        if p.reason_code == 1:
                            if st.measuring and sent_at is not None:
                                st.acked += 1
                                st.sendack.add(now - sent_at)
                        else:
                            st.failed += 1
                            st.error(f"sendack_{p.reason_code}")
                    elif t == wk.CONNACK:
                        self.connack.set(p)
                    elif t == wk.DISCONNECT:
                        st.error(f"disconnect_{p.reason_code}")
                if acks:
                    self.sock.sendall(b"".join([self._frame(a) for a in acks]))
                if dec.error is not None:
                    st.error("bad_frame")
                    break
        except OSError:
            pass
        finally:
            self.closed = True
            if not self.connack.ready():
                self.connack.set(None)


def run(cfg: dict) -> dict:
    stats = Stats()

    def make(c: dict) -> Conn:
        conn = Conn(c["host"], c["port"], c["uid"], c.get("token", "t"), stats, cfg.get("encrypt", True),
                    c.get("ws", False))
        conn.connect()
        return conn
    conns, failed = open_all(cfg["connections"], make)
    ready_then_wait(conns, failed)
    body = json.dumps({"type": 1, "content": "x" * cfg.get("payload_bytes", 32)}).encode()
    duration, warmup = cfg["duration"], cfg.get("warmup", 2.0)
    window = cfg.get("window", 0)  # 0: open loop at the given rate; > 0: closed loop with this many in flight
    stop_at = time.time() + warmup + duration

    def sender(a: dict) -> None:
        conn = conns.get(a["uid"])
        if conn is None:
            return
        targets = a["to"]

        def send(i: int) -> None:
            channel, ctype = targets[i % len(targets)]
            conn.send(channel, ctype, body)
        send_loop(conn, send, stop_at, window=window, rate=a.get("rate", 0.0))
    senders = [gevent.spawn(sender, a) for a in cfg["senders"]]
    measured = measure(stats, senders, warmup, stop_at)
    gevent.sleep(cfg.get("drain", 2.0))  # let the last SENDACKs and RECVs arrive (not counted)
    for conn in conns.values():
        try:
            conn.sock.close()
        except OSError:
            pass
    return {"event": "result", "seconds": measured, "sent": stats.sent, "acked": stats.acked, "failed": stats.failed,
            "delivered": stats.delivered, "errors": stats.errors, "sendack": stats.sendack.to_json(),
            "e2e": stats.e2e.to_json(), "connected": len(conns), "window": stats.window}


def main() -> None:
    cfg = json.loads(sys.stdin.readline())
    print(json.dumps(run(cfg)), flush=True)


if __name__ == "__main__":
    main()
