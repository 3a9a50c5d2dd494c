"""What every load process and coordinator share: opening connections, the go signal, merging results.

The WebSocket client pieces (``ws_upgrade``, ``ws_frame``, ``parse_frames``) are here too:
the WKProto worker speaks WKProto over WebSocket with them, the comparison worker Socket.IO.

A load process opens its connections (``open_all``), says ``ready`` on stdout and
waits for ``go`` on stdin (``ready_then_wait``), drives each sender with ``send_loop``
(closed loop with a window, or paced open loop); the coordinator merges the
per-process result lines (``merge``): latency histograms, counts and errors.
"""
from __future__ import annotations

import base64
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool

from ops.bench.loadgen.stats import Histogram


def open_all(specs: list[dict], make: Callable[[dict], Any], concurrency: int = 200) -> tuple[dict, list[str]]:
    """``make(spec)`` connects one client; returns ({uid: client}, failures)."""
    conns: dict[str, Any] = {}
    failed: list[str] = []

    def one(spec: dict) -> None:
        try:
            conns[spec["uid"]] = make(spec)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            failed.append(f"{spec['uid']}: {exc}")
    pool = gevent.pool.Pool(concurrency)
    for spec in specs:
        pool.spawn(one, spec)
    pool.join()
    return conns, failed


def ready_then_wait(conns: dict, failed: list[str]) -> None:
    print(json.dumps({"event": "ready", "connected": len(conns), "failed": failed[:5]}), flush=True)
    sys.stdin.readline()  # "go"


def merge(results: list[dict]) -> dict:
    """One summary of several processes' result lines."""
    sendack, e2e = Histogram(), Histogram()
    errors: dict[str, int] = {}
    for r in results:
        sendack.merge(Histogram.from_json(r["sendack"]))
        e2e.merge(Histogram.from_json(r["e2e"]))
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    windows = [r["window"] for r in results if r.get("window")]
    return {"seconds": max(r["seconds"] for r in results), "acked": sum(r["acked"] for r in results),
            "window": [min(w[0] for w in windows), max(w[1] for w in windows)] if windows else None,
            "delivered": sum(r["delivered"] for r in results), "failed": sum(r["failed"] for r in results),
            "sendack": sendack, "e2e": e2e, "errors": errors}


def send_loop(conn: Any, send: Callable[[int], None], stop_at: float, *, window: int = 0, rate: float = 0.0) -> None:
    """Call ``send(i)`` until ``stop_at``: closed loop (at most ``window`` unacknowledged, using
    ``conn.inflight``/``conn.slot_free``) or open loop at ``rate`` per second, starting at a
    random point of the first interval (senders do not fire together) and never bursting to
    catch up after falling behind by more than a second."""
    interval = 1.0 / rate if rate > 0 else 0.0
    nxt = time.time()
    if not window and interval:
        nxt += random.uniform(0, interval)
        gevent.sleep(max(0.0, nxt - time.time()))
    i = 0
    while time.time() < stop_at and not conn.closed:
        if window:
            while conn.inflight >= window and not conn.closed and time.time() < stop_at:
                conn.slot_free.clear()
                conn.slot_free.wait(1.0)
            send(i)
            i += 1
            if i % 50 == 0:
                gevent.sleep(0)
        else:
            send(i)
            i += 1
            nxt += interval
            delay = nxt - time.time()
            if delay > 0:
                gevent.sleep(delay)
            elif delay < -1.0:
                nxt = time.time()


def measure(stats: Any, senders: list, warmup: float, stop_at: float) -> float:
    """Count from the end of the warm-up to ``stop_at`` (every process measures the whole
    window, whether or not it has senders); returns the seconds measured and leaves the
    window's wall-clock (start, end) in ``stats.window``."""
    gevent.sleep(warmup)
    stats.measuring = True
    t0 = time.time()
    gevent.sleep(max(0.0, stop_at - t0))
    measured = time.time() - t0
    stats.measuring = False
    stats.window = (t0, t0 + measured)  # wall clock, so a coordinator can read server CPU over the same span
    gevent.joinall(senders, timeout=5)
    return measured


def run_workers(cmd: list[str], configs: list[dict], cwd: str, on_ready: Callable[[], Any] | None = None
                ) -> tuple[int, list[dict], Any]:
    """Start one load process per config, wait until all are connected, call ``on_ready()``
    (its value is returned), say ``go`` and collect their result lines:
    (connections opened, results, on_ready's value)."""
    procs = []
    for cfg in configs:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd)
        p.stdin.write(json.dumps(cfg) + "\n")
        p.stdin.flush()
        procs.append(p)
    connected = sum(json.loads(p.stdout.readline())["connected"] for p in procs)
    before = on_ready() if on_ready is not None else None
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait(30)
    return connected, results, before


def ws_upgrade(sock: socket.socket, host: str, port: int, path: str = "/") -> bytes:
    """The client half of the WebSocket handshake on ``sock``; returns bytes read past the headers."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    status, _, rest = head.partition(b"\r\n\r\n")
    if b" 101 " not in status.split(b"\r\n", 1)[0]:
        raise ConnectionError(status.split(b"\r\n", 1)[0].decode())
    return rest


def ws_frame(data: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (text by default; the mask is zero: XOR is a no-op, the bytes are legal)."""
    n = len(data)
    first = 0x80 | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + data


def parse_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Complete unmasked server frames at the front of ``buf`` (consumed); (opcode, payload)."""
    out = []
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        op = buf[pos] & 0x0F
        n = buf[pos + 1] & 0x7F
        head = 2
        if n == 126:
            if end - pos < 4:
                break
            n = struct.unpack_from(">H", buf, pos + 2)[0]
            head = 4
        elif n == 127:
            if end - pos < 10:
                break
            n = struct.unpack_from(">Q", buf, pos + 2)[0]
            head = 10
        if end - pos < head + n:
            break
        out.append((op, bytes(buf[pos + head:pos + head + n])))
        pos += head + n
    del buf[:pos]
    return out
