"""The outbound buffer (pure) and a session's writes to a client that does not read."""
from __future__ import annotations

import gevent
import pytest

from gateway import wkproto as wk
from gateway.outbound import MAX_BATCH_FRAMES, Outbound
from gateway.session import AUTHED, CLOSED
from mesh.base import metrics
from tests.unit.test_session import Client, delivery


def test_partial_writes_keep_the_stream_whole():
    o = Outbound()
    for i in range(3):
        o.push(bytes([i]) * 10, now=float(i))
    assert o.nbytes == 30 and o.batch() == [b"\0" * 10, b"\1" * 10, b"\2" * 10]
    o.sent(14)  # the first frame and 4 bytes of the second
    assert len(o) == 2 and o.offset == 4 and o.nbytes == 16
    assert [bytes(b) for b in o.batch()] == [b"\1" * 6, b"\2" * 10]
    assert o.oldest_age(5.0) == 4.0
    o.sent(16)
    assert len(o) == 0 and o.offset == 0 and o.nbytes == 0 and o.batch() == []


def test_batches_are_bounded():
    o = Outbound()
    for _ in range(MAX_BATCH_FRAMES + 10):
        o.push(b"x", 0.0)
    assert len(o.batch()) == MAX_BATCH_FRAMES


def test_limits():
    o = Outbound()
    o.push(b"x" * 100, now=0.0)
    o.push(b"y" * 100, now=1.0)
    assert o.too_slow(1.0, max_bytes=1000, max_delay=5.0, max_frames=10) == ""
    assert o.too_slow(1.0, max_bytes=150, max_delay=5.0, max_frames=10) == "bytes"
    assert o.too_slow(5.5, max_bytes=1000, max_delay=5.0, max_frames=10) == "age"
    assert o.too_slow(1.0, max_bytes=1000, max_delay=5.0, max_frames=1) == "frames"


def test_drop_unsent_keeps_a_started_frame_and_frames_in_flight():
    o = Outbound()
    for i in range(4):
        o.push(bytes([i]) * 10, 0.0)
    o.sent(3)
    assert o.drop_unsent() == 3 and len(o) == 1 and o.nbytes == 7
    o = Outbound()
    for i in range(4):
        o.push(bytes([i]) * 10, 0.0)
    o.batch()  # a write holds all four
    o.push(b"late", 0.0)
    assert o.drop_unsent() == 1 and len(o) == 4


@pytest.fixture
def gw():
    from tests.support.gateway_harness import make_gateway

    g, tokens, _sink, _pub = make_gateway(**{"conn.outboundMaxBytes": 4096, "conn.outboundMaxDelay": "2s"})
    tokens.tokens[("u1", 1)] = ("t1", 1)
    return g


def slow(limit):
    return metrics.gw_slow_clients.labels(limit)._value.get()


def test_a_blocked_socket_queues_then_the_writer_drains_in_order(gw):
    c = Client(gw)
    c.connect()
    c.t.blocked = True
    for i in range(5):
        c.s.deliver(delivery(message_id=100 + i, message_seq=i + 1))
    assert c.s.state != CLOSED and len(c.s._out) == 5 and c.s._writing
    c.t.blocked = False
    gevent.sleep(0.05)
    got = [p.message_seq for p in c.t.packets()[1:]]
    assert got == [1, 2, 3, 4, 5] and c.s._out is None and not c.s._writing


def test_over_the_byte_limit_gets_disconnect_and_close(gw):
    c = Client(gw)
    c.connect()
    before = slow("bytes")
    c.t.blocked = True
    big = b"z" * 1500
    for i in range(4):
        c.s.deliver(delivery(message_id=200 + i, message_seq=i + 1, payload=big))
    assert c.s.state == CLOSED and slow("bytes") == before + 1 and "u1" not in gw.by_uid
    assert not c.t.closed  # lingers to write the DISCONNECT
    c.t.blocked = False
    gevent.sleep(0.05)
    last = c.t.packets()[-1]
    assert last.type == wk.DISCONNECT and last.reason_code == wk.REASON_SYSTEM_ERROR
    assert last.reason.startswith("slow client: queued") and "limit 4096 bytes" in last.reason
    assert c.t.closed


def test_an_old_frame_is_found_by_the_sweeper(gw):
    import time

    c = Client(gw)
    c.connect()
    before = slow("age")
    c.t.blocked = True
    c.s.deliver(delivery())
    gw.sweep(time.monotonic() + 1)
    assert c.s.state != CLOSED
    gw.sweep(time.monotonic() + 3)
    assert c.s.state == CLOSED and slow("age") == before + 1


def test_a_delivery_batch_leaves_each_session_in_one_write(gw):
    c = Client(gw)
    c.connect()
    writes = c.t.writes
    gw.deliver_batch([(delivery(message_id=300 + i, message_seq=i + 1), ["u1"], None) for i in range(3)])
    assert c.t.writes == writes + 1 and [p.message_seq for p in c.t.packets()[1:]] == [1, 2, 3]


def test_a_slow_json_client_gets_a_disconnect_notification(gw):
    import json

    from tests.support.gateway_harness import FakeTransport

    t = FakeTransport("ws")
    s = gw.open(t)
    s.feed(b'{"method":"connect","id":"1","params":{"uid":"u1","token":"t1","deviceFlag":1}}')
    assert json.loads(t.text[0])["result"]["reasonCode"] == 1
    t.blocked = True
    for i in range(5):
        s.deliver(delivery(message_id=400 + i, message_seq=i + 1, payload=b"q" * 1500))
    assert s.state == CLOSED
    t.blocked = False
    gevent.sleep(0.05)
    last = json.loads(t.text[-1])
    assert last["method"] == "disconnect" and last["params"]["reasonCode"] == wk.REASON_SYSTEM_ERROR
    assert last["params"]["reason"].startswith("slow client") and t.closed


def test_real_socket_partial_writes_keep_every_frame_whole_and_in_order():
    """A real socketpair with small buffers and a slow reader: the writer's partial writes never tear a frame."""
    import socket

    from gateway.listeners import TcpTransport
    from tests.support.gateway_harness import make_gateway

    g, tokens, _sink, _pub = make_gateway(**{"conn.outboundMaxBytes": 64 * 1024 * 1024, "disableEncryption": True})
    tokens.tokens[("u1", 1)] = ("t1", 1)
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s = g.open(TcpTransport(a, "pair"))
    s.feed(wk.encode(wk.Connect(5, 1, "d1", "u1", "t1", 0, "")))  # no encryption: plain RECVs
    assert s.state == AUTHED
    n = 300
    got: list = []

    def read_slowly() -> None:
        dec = wk.FrameDecoder(5)
        while len(got) < n + 1:
            data = b.recv(3000)
            if not data:
                return
            got.extend(dec.feed(data))
            gevent.sleep(0.001)

    reader = gevent.spawn(read_slowly)
    for i in range(0, n, 3):  # batches of three messages of uneven sizes
        g.deliver_batch([(delivery(message_id=1000 + i + j, message_seq=i + j + 1, payload=b"p" * (100 + 997 * j)),
                          ["u1"], None) for j in range(3)])
    assert s._writing  # the socket could not take it all: the writer is draining
    reader.join(timeout=20)
    assert [p.message_seq for p in got[1:]] == list(range(1, n + 1))
    assert s._out is None and not s._writing and s.state != CLOSED
    s.close("done")
    b.close()
