"""A client that stops reading stalls nobody (issue 13's acceptance test, real processes).

A group member connects to node 1 over raw TCP with a 4 KB receive buffer, completes
CONNECT and never reads again. Six healthy members (two on each node) keep receiving
8 KB messages sent at 40/s for 30 s by three of them (one per node); the group's slot
is led by node 1, so node 1 both commits and delivers. Every healthy member must get
every message it did not send, delivery p99 < 1 s and max < 3 s, SENDACK p99 < 1 s, and
the stalled member must be disconnected with a reason within the configured limits.
The figures are printed (``-s`` shows them).
"""
from __future__ import annotations

import json
import re
import socket
import time
import uuid
import zlib

import gevent
import pytest

from gateway import wkproto as wk
from gateway.client import WKClient
from gateway.session_crypto import client_key_pair
from tests.support.servers import ready_cluster, wait_until

pytestmark = pytest.mark.cluster

MAX_BYTES = 1024 * 1024  # conn.outboundMaxBytes
MAX_DELAY = 3.0  # conn.outboundMaxDelay, seconds
RATE = 40.0  # group messages per second, all senders together
SECONDS = 30.0
SIZE = 8 * 1024


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


@pytest.fixture(scope="module")
def cluster():
    with ready_cluster(extra={"conn.outboundMaxBytes": MAX_BYTES, "conn.outboundMaxDelay": f"{MAX_DELAY}s"}) as c:
        yield c


def group_led_by(node, leader: int) -> str:
    """A fresh group id whose slot is led by ``leader``."""
    table = node.get("/cluster/slots")[1]
    led = {s["id"] for s in table["slots"] if s["leader"] == leader}
    while True:
        g = "busy" + uuid.uuid4().hex[:8]
        if zlib.crc32(g.encode()) % table["slotCount"] in led:
            return g


class StalledReader:
    """Raw TCP, 4 KB receive buffer: CONNECT, read the CONNACK, then never read again."""

    def __init__(self, addr: tuple[str, int], uid: str, token: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(addr)
        _priv, client_key = client_key_pair()
        self.sock.sendall(wk.encode(wk.Connect(wk.LATEST_VERSION, 1, uuid.uuid4().hex, uid, token,
                                               int(time.time() * 1000), client_key), wk.LATEST_VERSION))
        dec = wk.FrameDecoder(wk.LATEST_VERSION)
        self.sock.settimeout(10)
        while True:
            got = dec.feed(self.sock.recv(64))  # small reads: leave anything after the CONNACK unread
            if got:
                assert got[0].type == wk.CONNACK and got[0].reason_code == wk.REASON_SUCCESS, got[0]
                break

    def drain(self, timeout: float) -> tuple[list, bool]:
        """Read everything now (after the server gave up on us): the frames, and whether EOF came."""
        dec = wk.FrameDecoder(wk.LATEST_VERSION)
        frames: list = []
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return frames, True
            if not data:
                return frames, True
            frames.extend(dec.feed(data))
        return frames, False


def test_a_client_that_stops_reading_stalls_nobody(cluster):
    n1, n2, n3 = (cluster.nodes[i] for i in (1, 2, 3))
    stalled = "stall" + uuid.uuid4().hex[:6]
    healthy = [f"h{i}" + uuid.uuid4().hex[:6] for i in range(6)]
    for u in [stalled, *healthy]:
        assert n1.post("/user/token", {"uid": u, "token": "tk-" + u, "device_flag": 1, "device_level": 1})[0] == 200
    g = group_led_by(n1, 1)
    assert n2.post("/channel", {"channel_id": g, "channel_type": 2, "subscribers": [stalled, *healthy]})[0] == 200
    where = [n1, n1, n2, n2, n3, n3]
    clients = {u: WKClient(f"127.0.0.1:{node.ports['tcp']}", u, "tk-" + u, timeout=15)
               for u, node in zip(healthy, where)}
    for c in clients.values():
        c.connect()
    received: dict[str, dict[int, float]] = {u: {} for u in healthy}
    lat: list[float] = []

    def on_message(uid):
        def fn(m: wk.Recv) -> None:
            body = json.loads(m.payload)
            received[uid][body["i"]] = time.time()
            lat.append(time.time() - body["ts"])
        return fn

    for u, c in clients.items():
        c.on_message = on_message(u)
    staller = StalledReader(("127.0.0.1", n1.ports["tcp"]), stalled, "tk-" + stalled)

    senders = [healthy[0], healthy[2], healthy[4]]  # one on each node
    sent: dict[int, str] = {}
    acks: list[float] = []
    refused: list[int] = []
    gone_at: list[float] = []
    drained: list = []
    started = time.time()

    def send_loop(k: int, uid: str) -> None:
        c = clients[uid]
        per = len(senders) / RATE
        i = k
        t_next = started + k / RATE
        while t_next < started + SECONDS:
            gevent.sleep(max(0.0, t_next - time.time()))
            body = {"i": i, "ts": time.time(), "from": uid}
            body["pad"] = "x" * (SIZE - len(json.dumps(body)) - 10)
            t0 = time.time()
            sent[i] = uid
            _seq, ar = c.send_nowait(g, 2, json.dumps(body).encode())

            def acked(a, t0=t0, i=i) -> None:
                ack = a.value
                if ack is None or ack.reason_code != wk.REASON_SUCCESS:
                    refused.append(i)
                else:
                    acks.append(time.time() - t0)
            ar.rawlink(acked)
            i += len(senders)
            t_next += per

    def watch_stalled() -> None:
        """Notice when node 1 stops listing the stalled member's connection."""
        while time.time() < started + SECONDS + 10:
            code, body = n1.get(f"/connz?uid={stalled}", base=n1.manager)
            if code == 200 and not any(c["uid"] == stalled for c in body.get("connections", [])):
                gone_at.append(time.time())
                drained.append(staller.drain(10))  # read now: the server lingers briefly to write the DISCONNECT
                return
            gevent.sleep(0.2)

    watcher = gevent.spawn(watch_stalled)
    loops = [gevent.spawn(send_loop, k, u) for k, u in enumerate(senders)]
    gevent.joinall(loops)
    send_end = time.time()
    expected = {u: {i for i, s in sent.items() if s != u} for u in healthy}

    def complete() -> bool:
        return all(expected[u] <= set(received[u]) for u in healthy) and len(acks) + len(refused) >= len(sent)
    try:
        wait_until(complete, 20, what="every delivery and SENDACK")
    except AssertionError:
        pass
    settle = time.time() - send_end
    watcher.join(timeout=max(0.0, started + SECONDS + 10 - time.time()))
    frames, eof = drained[0] if drained else ([], False)
    missing = {u: len(expected[u] - set(received[u])) for u in healthy}
    disconnects = [f for f in frames if f.type == wk.DISCONNECT]
    print(f"\nslow reader: {len(sent)} messages of {SIZE} B to 6 healthy members over {SECONDS:.0f}s "
          f"(settled {settle:.1f}s after the last send)")
    print(f"  deliveries {len(lat)}, missing {sum(missing.values())} {missing}")
    print(f"  delivery p50 {pct(lat, 50) * 1000:.0f} ms, p99 {pct(lat, 99) * 1000:.0f} ms, "
          f"max {max(lat, default=float('nan')) * 1000:.0f} ms")
    print(f"  SENDACK n={len(acks)} refused={len(refused)} p50 {pct(acks, 50) * 1000:.0f} ms, "
          f"p99 {pct(acks, 99) * 1000:.0f} ms, max {max(acks, default=float('nan')) * 1000:.0f} ms")
    print(f"  stalled member: gone from node 1 after "
          f"{(gone_at[0] - started) if gone_at else float('nan'):.1f}s; read {len(frames)} frame(s) "
          f"afterwards, DISCONNECT {[(d.reason_code, d.reason) for d in disconnects]}, EOF {eof}")
    for c in clients.values():
        c.close()
    staller.sock.close()

    assert not refused and sum(missing.values()) == 0, (refused[:10], missing)
    assert pct(lat, 99) < 1.0 and max(lat) < 3.0
    assert len(acks) == len(sent) and pct(acks, 99) < 1.0
    assert gone_at, "the stalled member was never disconnected"
    assert disconnects and eof, "no DISCONNECT before the close"
    d = disconnects[-1]
    assert d.reason_code == wk.REASON_SYSTEM_ERROR and d.reason.startswith("slow client")
    # the reason names the limit that was hit and the figures at that moment
    m = re.search(r"queued ([0-9]+) bytes, oldest ([0-9.]+)s", d.reason)
    assert m, d.reason
    queued, oldest = int(m.group(1)), float(m.group(2))
    assert queued > MAX_BYTES or oldest > MAX_DELAY, d.reason
    assert oldest <= MAX_DELAY + 1.5, d.reason  # never held far past the time limit (checked every second)
