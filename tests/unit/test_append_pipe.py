"""Coalescing of per-slot appends into one request per peer, and per-slot results and refusals."""
from __future__ import annotations

import gevent
import pytest

from mesh.net.transport import PeerUnreachable, Refused, RemoteError
from mesh.replication.append_pipe import AppendPipes, serve_many


def follower(sender, req):
    slot = req[0]
    if slot == 113:
        raise Refused("not_member", slot)
    if slot == 114:
        raise ValueError("boom")
    gevent.sleep(0.01)
    return {"ok": True, "slot": slot, "from": sender}


def test_one_request_per_hub_turn_and_per_slot_results():
    calls = []

    def request(peer, method, reqs, timeout):
        calls.append((peer, method, len(reqs)))
        return serve_many(follower, 1, reqs)

    pipes = AppendPipes(request)
    jobs = {slot: gevent.spawn(pipes.call, 2, [slot], 1.0) for slot in range(20)}
    gevent.joinall(list(jobs.values()))
    assert calls == [(2, "repl.append_many", 20)]
    assert [jobs[s].value["slot"] for s in range(20)] == list(range(20))
    bad = {slot: gevent.spawn(pipes.call, 2, [slot], 1.0) for slot in (12, 113, 114)}
    gevent.joinall(list(bad.values()))
    assert bad[12].value["ok"]
    assert isinstance(bad[113].exception, RemoteError) and bad[113].exception.code == "not_member"
    assert isinstance(bad[114].exception, RemoteError) and "boom" in str(bad[114].exception)


def test_transport_failure_reaches_every_slot_of_the_batch():
    def request(peer, method, reqs, timeout):
        raise PeerUnreachable(f"node {peer} is not a live member")

    pipes = AppendPipes(request)
    jobs = [gevent.spawn(pipes.call, 3, [s], 1.0) for s in range(5)]
    gevent.joinall(jobs)
    assert all(isinstance(j.exception, PeerUnreachable) for j in jobs)
    with pytest.raises(PeerUnreachable):
        pipes.call(3, [1], 1.0)
