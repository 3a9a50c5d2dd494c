"""Plain ZeroMQ sockets under gevent (``mesh.net.zsock``): no lost wake-up, no starving.

Real sockets on loopback and inproc; no mocks. Each test would hang until its
``gevent.Timeout`` (and fail) if a wake-up were lost.
"""
from __future__ import annotations

import time

import gevent
import pytest
import zmq

from mesh.net import zsock
from mesh.net.zsock import Receiver
from tests.support.ports import free_port


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _pair(ctx, kind_a=zmq.DEALER, kind_b=zmq.ROUTER):
    port = free_port()
    b = ctx.socket(kind_b)
    a = ctx.socket(kind_a)
    for sock in (a, b):  # the mesh's sockets have a high-water mark of 100,000 too
        sock.setsockopt(zmq.SNDHWM, 100000)
        sock.setsockopt(zmq.RCVHWM, 100000)
    b.bind(f"tcp://127.0.0.1:{port}")
    a.connect(f"tcp://127.0.0.1:{port}")
    return a, b


def test_pipelined_requests_while_the_same_socket_sends(ctx):
    """Replies arrive while other greenlets send on the receiving socket (the edge-trigger case)."""
    dealer, router = _pair(ctx)
    router_rx = Receiver(router, multipart=True)
    dealer_rx = Receiver(dealer)
    n = 3000

    def echo():
        while True:
            for ident, body in router_rx.recv_many():
                router.send_multipart([ident, body], zmq.NOBLOCK)
                router_rx.poke()

    got: list[bytes] = []

    def collect():
        while len(got) < n:
            got.extend(dealer_rx.recv_many())

    server, collector = gevent.spawn(echo), gevent.spawn(collect)
    with gevent.Timeout(20):
        for i in range(n):
            dealer.send(b"%d" % i, zmq.NOBLOCK)
            dealer_rx.poke()
            if i % 7 == 0:
                gevent.sleep(0)  # let replies interleave with the sends
        collector.join()
    server.kill()
    assert got == [b"%d" % i for i in range(n)]


def test_a_flood_is_taken_in_batches_and_others_run_between(ctx):
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://flood")
    push.connect("inproc://flood")
    rx = Receiver(pull, batch=50)
    for i in range(500):
        push.send(b"%d" % i)
    ticks: list[int] = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0)) for _ in range(1000)])
    sizes: list[int] = []
    seen_ticks: list[int] = []
    with gevent.Timeout(10):
        while sum(sizes) < 500:
            sizes.append(len(rx.recv_many()))
            seen_ticks.append(len(ticks))
    ticker.kill()
    assert max(sizes) == 50 and sum(sizes) == 500
    assert seen_ticks[-1] > seen_ticks[0], "the ticker never ran while the flood was drained"


def test_a_wake_up_missed_by_the_fd_is_caught_by_the_guard(ctx):
    """A message queued behind a consumed FD signal is still received within the guard."""
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://guard")
    push.connect("inproc://guard")
    rx = Receiver(pull)
    got: list[bytes] = []
    g = gevent.spawn(lambda: got.extend(rx.recv_many()))
    gevent.sleep(0.05)  # the receiver waits on the FD
    push.send(b"x")
    pull.get(zmq.EVENTS)  # another call on the socket eats the FD's signal; no poke
    started = time.monotonic()
    with gevent.Timeout(5):
        g.join()
    assert got == [b"x"]
    waited = time.monotonic() - started
    assert zsock.GUARD * 0.5 < waited < zsock.GUARD + 1.0, waited  # woken by the guard, not the FD


def test_idle_receivers_sleep(ctx):
    """Waiting costs nothing: the guard timer re-arms with its full delay every time."""
    dealer, router = _pair(ctx)
    receivers = [Receiver(router, multipart=True), Receiver(dealer)]
    greenlets = [gevent.spawn(rx.recv_many) for rx in receivers]
    cpu = time.process_time()
    gevent.sleep(1.0)
    cpu = time.process_time() - cpu
    gevent.killall(greenlets)
    assert cpu < 0.2, f"idle receivers used {cpu:.2f} s of CPU in 1 s"


def test_closing_the_socket_ends_the_receiver(ctx):
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://closing")
    rx = Receiver(pull)
    g = gevent.spawn(rx.recv_many)
    gevent.sleep(0.05)
    g.kill()  # the owner kills the receiving greenlet, then closes, as Mesh.close does
    rx.close()
    pull.close(linger=0)
    assert g.dead and isinstance(g.value, gevent.GreenletExit)
