"""One load process for the WebSocket comparison servers (Socket.IO or the bare server).

Same contract as ``ops/bench/loadgen/worker.py``: reads its assignment as JSON on
stdin (connections with their rooms, senders with a window of messages in flight),
prints a ready line, waits for ``go``, runs, prints one JSON line of results.

A minimal WebSocket client on raw gevent sockets (frames parsed in bulk per read,
so the client costs little next to the server). ``proto`` is ``socketio`` (Engine.IO
v4 over WebSocket: ``40{auth}`` to connect, ``42["msg",{...}]`` events, answers
pings) or ``bare`` (``room|sender|send time`` text frames). A sender counts a message
as acknowledged when the server echoes it back to the sender (it is in the room);
every other member's copy is a delivery, timed from its send time.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

from ops.bench.loadgen import harness  # noqa: E402
from ops.bench.loadgen.stats import Histogram  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.sendack = Histogram()
        self.e2e = Histogram()
        self.acked = 0
        self.delivered = 0
        self.errors: dict[str, int] = {}
        self.measuring = False
        self.window: tuple[float, float] | None = None


class Conn:
    def __init__(self, c: dict, proto: str, stats: Stats) -> None:
        self.uid, self.host, self.port, self.rooms = c["uid"], c["host"], c["port"], c["rooms"]
        self.proto = proto
        self.stats = stats
        self.inflight = 0
        self.slot_free = gevent.event.Event()
        self.ready = gevent.event.AsyncResult()
        self.closed = False

    def connect(self) -> None:
        if self.proto == "socketio":
            path = "/socket.io/?EIO=4&transport=websocket"
        else:
            path = "/?rooms=" + ",".join(self.rooms)
        self.sock = socket.create_connection((self.host, self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rest = harness.ws_upgrade(self.sock, self.host, self.port, path)
        gevent.spawn(self._reader, bytearray(rest))
        if self.proto == "socketio":
            self.ready.get(timeout=30)
        self.sock.settimeout(None)

    def send(self, room: str) -> None:
        now = time.time()
        if self.proto == "socketio":
            # a 64-byte-or-so content field, like the WKProto payload of the Skein run
            text = '42["msg",' + json.dumps({"room": room, "from": self.uid, "t": now, "content": "x" * 38}) + "]"
        else:
            text = f"{room}|{self.uid}|{now!r}"
        self.inflight += 1
        try:
            self.sock.sendall(harness.ws_frame(text.encode()))
        except OSError:
            self.closed = True

    def _on_message(self, sender: str, sent: float, now: float) -> None:
        st = self.stats
        if sender == self.uid:
            self.inflight -= 1
            self.slot_free.set()
            if st.measuring:
                st.acked += 1
                st.sendack.add(now - sent)
        elif st.measuring:
            st.delivered += 1
            st.e2e.add(now - sent)

    def _reader(self, buf: bytearray) -> None:
        try:
            while True:
                frames = harness.parse_frames(buf)
                now = time.time()
                out = []
                for op, data in frames:
                    if op == 8:
                        raise OSError("closed by server")
                    if self.proto == "bare":
                        _room, sender, sent = data.split(b"|", 2)
                        self._on_message(sender.decode(), float(sent), now)
                    elif data[:2] == b"42":
                        ev = json.loads(data[2:])[1]
                        self._on_message(ev["from"], ev["t"], now)
                    elif data[:1] == b"0" and data[:2] != b"40":
                        out.append(harness.ws_frame(b"40" + json.dumps({"rooms": self.rooms}).encode()))
                    elif data[:2] == b"40":
                        self.ready.set(True)
                    elif data == b"2":
                        out.append(harness.ws_frame(b"3"))
                if out:
                    self.sock.sendall(b"".join(out))
                chunk = self.sock.recv(262144)
                if not chunk:
                    break
                buf += chunk
        except (OSError, ValueError, KeyError, IndexError) as exc:
            self.stats.errors[type(exc).__name__] = self.stats.errors.get(type(exc).__name__, 0) + 1
        finally:
            self.closed = True
            if not self.ready.ready():
                self.ready.set_exception(ConnectionError("closed before the Socket.IO connect"))


def run(cfg: dict) -> dict:
    stats = Stats()

    def make(c: dict) -> Conn:
        conn = Conn(c, cfg["proto"], stats)
        conn.connect()
        return conn
    conns, failed = harness.open_all(cfg["connections"], make, concurrency=100)
    harness.ready_then_wait(conns, failed)
    duration, warmup, window = cfg["duration"], cfg.get("warmup", 2.0), cfg.get("window", 0)
    stop_at = time.time() + warmup + duration

    def sender(a: dict) -> None:
        conn = conns.get(a["uid"])
        if conn is not None:
            harness.send_loop(conn, lambda _i: conn.send(a["room"]), stop_at, window=window, rate=a.get("rate", 0.0))
    senders = [gevent.spawn(sender, a) for a in cfg["senders"]]
    measured = harness.measure(stats, senders, warmup, stop_at)
    gevent.sleep(1.0)
    return {"seconds": measured, "acked": stats.acked, "delivered": stats.delivered,
            "sendack": stats.sendack.to_json(), "e2e": stats.e2e.to_json(), "errors": stats.errors,
            "failed": len(failed), "window": stats.window}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.stdin.readline()))), flush=True)
