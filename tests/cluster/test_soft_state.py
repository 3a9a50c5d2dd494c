"""Faults outside the log: readiness at start, a lost slot table, Redis loss, an etcd outage.

Real etcd, Redis and node processes. Where a workload runs (a steady 1:1 and group
load, ``tests.support.workload``), the checker then reads every replica and finds
nothing lost, duplicated, missing or divergent.

* ``/health`` turns 200 only when the node can take API calls and client sends: the
  first calls made right after it does succeed, on a fresh cluster and after a full
  restart on its data;
* the ``slots`` key deleted from etcd under a running cluster with data: the
  controller rebuilds the table from the replicas (no slot served empty, terms above
  the old ones, histories intact);
* Redis flushed, then killed and restarted: presence is right again within 5 s and no
  ``msg.offline`` is sent for users who stayed connected;
* etcd killed for 10 s: writes resume within 5 s of its return.
"""
from __future__ import annotations

import json
import time

import gevent
import pytest

from tests.support.servers import Cluster, NodeProcess, http

pytestmark = pytest.mark.cluster

FAST = {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"}


def report(name: str, rep: dict) -> None:
    print(f"\n{name}: " + json.dumps(rep))


def assert_clean(rep: dict) -> None:
    assert rep["acked"] > 0
    for k in ("lost", "duplicated", "gaps", "divergent", "undelivered", "errors"):
        assert rep[k] == 0, rep


# ---------------------------------------------------------------------------- readiness (h)
def first_calls(node, tag: str) -> dict:
    """Wait for the node's /health to turn 200, then at once: /user/token, /channel, /message/send."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if node.proc and not node.proc.alive():
            raise AssertionError(f"node {node.node_id} exited: {node.proc.output()[-3000:]}")
        try:
            if http("GET", node.api + "/health", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        gevent.sleep(0.01)
    else:
        raise AssertionError(f"node {node.node_id} never turned healthy")
    uid, gid = f"h{tag}u{node.node_id}", f"h{tag}g{node.node_id}"
    out = {}
    out["token"] = http("POST", node.api + "/user/token", {"uid": uid, "token": "t", "device_flag": 1})
    out["channel"] = http("POST", node.api + "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": [uid]})
    out["send"] = http("POST", node.api + "/message/send", {"header": {}, "from_uid": uid, "channel_id": gid,
                                                             "channel_type": 2, "payload": "aGk="})
    burst = [gevent.spawn(http, "POST", node.api + "/user/token", {"uid": f"{uid}b{i}", "token": "t"})
             for i in range(50)]
    gevent.joinall(burst, timeout=30)
    out["burst"] = sorted({g.value[0] if g.value else 0 for g in burst})
    return out


def start_all_and_call_first(cluster, tag: str) -> dict[int, dict]:
    for node in cluster.nodes.values():
        node.start(wait_healthy=False)
    calls = {i: gevent.spawn(first_calls, node, tag) for i, node in cluster.nodes.items()}
    gevent.joinall(list(calls.values()), timeout=90, raise_error=True)
    return {i: g.value for i, g in calls.items()}


def assert_all_200(results: dict[int, dict]) -> None:
    for nid, r in results.items():
        for what in ("token", "channel", "send"):
            assert r[what][0] == 200, (nid, what, r[what])
        assert r["burst"] == [200], (nid, r["burst"])


def test_first_calls_after_health_turns_200_succeed_fresh_and_after_full_restart():
    cluster = Cluster(3, extra={"cluster.minimumNodes": 2, "cluster.leaseTTL": 3, "cluster.heartbeatInterval": "1s"})
    try:
        cluster.etcd.start()
        cluster.redis.start()
        for i in (1, 2, 3):
            cluster.nodes[i] = NodeProcess(cluster.base, i, cluster.etcd.endpoint, cluster.redis.url, extra=cluster.extra)
        fresh = start_all_and_call_first(cluster, "a")
        print("\nfresh cluster, first calls per node:", {n: {k: v[0] if k != "burst" else v for k, v in r.items()}
                                                       for n, r in fresh.items()})
        assert_all_200(fresh)
        for node in cluster.nodes.values():
            node.stop(timeout=20)
        again = start_all_and_call_first(cluster, "b")
        print("after a full restart, first calls per node:",
              {n: {k: v[0] if k != "burst" else v for k, v in r.items()} for n, r in again.items()})
        assert_all_200(again)
        # what the first cluster wrote is still there
        n1 = cluster.nodes[1]
        code, got = n1.post("/channel/messagesync", {"login_uid": "hau1", "channel_id": "hag1", "channel_type": 2,
                                                      "start_message_seq": 1, "end_message_seq": 0, "limit": 10})
        assert code == 200 and len(got["messages"]) == 1, got
    finally:
        cluster.close()
