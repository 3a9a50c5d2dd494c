"""The ZeroMQ mesh in one process: requests, refusals, broadcast order and gap recovery.

Real sockets on loopback (random ports); no mocks.
"""
from __future__ import annotations

import gevent
import pytest

from mesh.base import metrics
from mesh.net.transport import Mesh, PeerAddr, PeerUnreachable, Refused, RemoteError, RequestTimeout
from tests.support.ports import free_port


@pytest.fixture
def pair():
    meshes = []
    for nid in (1, 2):
        m = Mesh(nid, f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", request_timeout=2,
                 heartbeat_interval=0.1, replay_size=50)
        m.bind()
        m.start()
        meshes.append(m)
    a, b = meshes
    a.set_peers({2: PeerAddr(b.router_addr, b.pub_addr)})
    b.set_peers({1: PeerAddr(a.router_addr, a.pub_addr)})
    yield a, b
    for m in meshes:
        m.close()


def wait_for(pred, timeout=5.0):
    deadline = gevent.get_hub().loop.now() + timeout
    while gevent.get_hub().loop.now() < deadline:
        if pred():
            return True
        gevent.sleep(0.02)
    return False


def test_request_reply_both_ways_and_local(pair):
    a, b = pair
    b.handle("add", lambda sender, p: {"sum": p[0] + p[1], "from": sender})
    a.handle("add", lambda sender, p: {"sum": p[0] + p[1], "from": sender})
    assert wait_for(lambda: _try(a, 2))
    assert a.request(2, "add", [2, 3]) == {"sum": 5, "from": 1}
    assert b.request(1, "add", [4, 5]) == {"sum": 9, "from": 2}
    assert a.request(1, "add", [1, 1]) == {"sum": 2, "from": 1}  # local call
    assert a.ping(2) < 1.0


def _try(m, peer):
    try:
        m.ping(peer, timeout=0.3)
        return True
    except Exception:
        return False


def test_refusal_error_and_timeout(pair):
    a, b = pair

    def refuse(sender, p):
        raise Refused("not_leader", {"leader": 3})

    def crash(sender, p):
        raise ValueError("boom")

    b.handle("refuse", refuse)
    b.handle("crash", crash)
    b.handle("slow", lambda s, p: gevent.sleep(1))
    assert wait_for(lambda: _try(a, 2))
    with pytest.raises(RemoteError) as e:
        a.request(2, "refuse")
    assert e.value.code == "not_leader" and e.value.detail == {"leader": 3}
    with pytest.raises(RemoteError) as e:
        a.request(2, "crash")
    assert "boom" in str(e.value.detail)
    with pytest.raises(RemoteError) as e:
        a.request(2, "nope")
    assert e.value.code == "no_method"
    with pytest.raises(RequestTimeout):
        a.request(2, "slow", timeout=0.2)
    with pytest.raises(PeerUnreachable):
        a.request(9, "ping")


def test_broadcast_in_order_and_gap_recovered(pair):
    a, b = pair
    seen = []
    b.subscribe("m", lambda sender, p: seen.append(p))
    assert wait_for(lambda: _try(b, 1))
    a.publish("m", -1)  # baseline
    assert wait_for(lambda: seen == [-1])
    # Simulate a lost broadcast: publish two without sending the first on the wire.
    a._pub_seq += 1
    a._replay.append((a._pub_seq, __import__("mesh.net.transport").net.transport.pack([1, a.instance, a._pub_seq, "m", 0])))
    before = metrics.mesh_pub_gaps.labels("1")._value.get()
    for i in range(1, 20):
        a.publish("m", i)
    assert wait_for(lambda: len(seen) == 21)
    assert seen == list(range(-1, 20))
    assert metrics.mesh_pub_gaps.labels("1")._value.get() - before == 1


def test_tail_gap_found_by_heartbeat_and_lost_counted(pair):
    a, b = pair
    seen = []
    b.subscribe("m", lambda sender, p: seen.append(p))
    assert wait_for(lambda: _try(b, 1))
    a.publish("m", 0)
    assert wait_for(lambda: seen == [0])
    lost_before = metrics.mesh_pub_lost.labels("1")._value.get()
    a._pub_seq += 60  # 60 never sent, and more than the 50-entry replay buffer keeps
    for i in range(60):
        a._replay.append((a._pub_seq - 59 + i, __import__("mesh.net.transport").net.transport.pack(
            [1, a.instance, a._pub_seq - 59 + i, "m", 100 + i])))
    assert wait_for(lambda: len(seen) == 51, timeout=3)
    assert seen[1:] == list(range(110, 160))  # the last 50 came back, in order
    assert metrics.mesh_pub_lost.labels("1")._value.get() - lost_before == 10


def test_probe_answers_for_a_bound_router(pair):
    a, b = pair
    info = a.probe(b.router_addr)
    assert info["node"] == 2 and info["instance"] == b.instance
    assert a.probe(f"127.0.0.1:{free_port()}", timeout=0.3) is None
