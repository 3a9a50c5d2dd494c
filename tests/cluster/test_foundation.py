"""Foundation: membership, controller, slot table, mesh, health and graceful stop.

Every test runs real etcd, Redis and node processes on random ports.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.support.servers import ROOT, NodeProcess, http, wait_until

pytestmark = pytest.mark.cluster


def slots(node):
    return node.get("/cluster/slots")[1]


def members(node):
    return sorted(n["id"] for n in node.get("/cluster/nodes")[1]["nodes"])


def wait_table_settled(cluster, nodes=None):
    nodes = nodes or cluster.live_nodes()

    def view():
        views = [slots(n) for n in nodes]
        first = views[0]
        ok = (first["version"] > 0 and all(v == first for v in views)
              and all(s["ready"] and not s["learners"] for s in first["slots"]))
        return first if ok else None

    def settled():
        first = view()
        if first is None:
            return None
        time.sleep(0.5)
        again = view()
        return again if again is not None and again["version"] == first["version"] else None
    return wait_until(settled, 30, what="every node to see the same settled slot table")


def policies(pid: int) -> list[int]:
    """The scheduling policy of each thread of ``pid`` (field 41 of /proc/<pid>/task/<tid>/stat)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            out.append(int(fh.read().rsplit(")", 1)[1].split()[38]))
    return out


def test_three_nodes_agree_on_members_and_balanced_slot_table(cluster3):
    nodes = list(cluster3.nodes.values())
    for n in nodes:
        wait_until(lambda n=n: members(n) == [1, 2, 3], 10, what="3 members")
    table = wait_table_settled(cluster3)
    assert table["slotCount"] == 64 and table["replicaCount"] == 3
    counts = Counter(s["leader"] for s in table["slots"])
    assert sorted(counts.values()) == [21, 21, 22], counts
    assert all(sorted(s["replicas"]) == [1, 2, 3] for s in table["slots"])
    leaders = {n.get("/cluster/nodes")[1]["leader"] for n in nodes}
    assert len(leaders) == 1 and leaders.pop() in (1, 2, 3)
    body = nodes[0].get("/cluster/nodes")[1]
    peers = [x for x in body["nodes"] if x["id"] != 1]
    assert all(p["reachable"] and p["rtt_ms"] is not None and p["rtt_ms"] < 1000 for p in peers)
    assert all(p["addr"] and p["status"] in ("leader", "follower") for p in body["nodes"])
    st = nodes[1].get("/cluster/status")[1]
    assert st["status"] == "healthy" and st["members"] == [1, 2, 3]
    code, metrics_text = nodes[2].get("/metrics", base=nodes[2].manager)
    assert code == 200
    for name in ("skein_cluster_members 3.0", "skein_mesh_pub_gaps_total", "skein_slots_led", "skein_etcd_up 1.0",
                 "skein_redis_up 1.0"):
        assert name in metrics_text, name
    threads = policies(nodes[0].proc.pid)  # schedBatch (default on): every thread, the ZeroMQ and store ones too
    assert len(threads) > 3 and set(threads) == {os.SCHED_BATCH}, threads


def test_kill9_controller_then_restart(cluster3):
    wait_table_settled(cluster3)
    ctl = cluster3.nodes[1].get("/cluster/nodes")[1]["leader"]
    victim = cluster3.nodes[ctl]
    others = [n for n in cluster3.nodes.values() if n is not victim]
    t0 = time.time()
    victim.kill9()
    for n in others:
        wait_until(lambda n=n: len(members(n)) == 2, 10, what="2 members")

    def recovered():
        body = others[0].get("/cluster/nodes")[1]
        tab = slots(others[0])
        live = {x["id"] for x in body["nodes"]}
        return body["leader"] in live and all(s["leader"] in live for s in tab["slots"])
    wait_until(recovered, 10, what="new controller and a live leader for every slot")
    for n in others:
        wait_until(lambda n=n: n.get("/health")[0] == 200, 10, what="survivors healthy")
    took = time.time() - t0
    assert took < 10, took
    # The dead node stays a voter (it will come back), and leaders are balanced over the rest.
    tab = slots(others[0])
    assert all(ctl in s["replicas"] for s in tab["slots"])
    counts = Counter(s["leader"] for s in tab["slots"])
    assert max(counts.values()) - min(counts.values()) <= 1
    t1 = time.time()
    victim.start(timeout=15)
    for n in others:
        wait_until(lambda n=n: members(n) == [1, 2, 3], 10, what="restarted node listed")
    assert time.time() - t1 < 15
    table = wait_table_settled(cluster3)
    counts = Counter(s["leader"] for s in table["slots"])
    assert sorted(counts.values()) == [21, 21, 22]


def test_health_follows_etcd(cluster3):
    n1 = cluster3.nodes[1]
    cluster3.etcd.stop()
    wait_until(lambda: n1.get("/health")[0] == 503 and "etcd" in n1.get("/health")[1]["message"], 15,
               what="health 503 naming etcd")
    cluster3.etcd.start(existing=True)
    for n in cluster3.nodes.values():
        wait_until(lambda n=n: n.get("/health")[0] == 200, 20, what="health 200 after etcd returns")
    wait_until(lambda: members(n1) == [1, 2, 3], 10, what="3 members again")


def test_health_follows_redis(cluster3):
    n1 = cluster3.nodes[1]
    cluster3.redis.stop()
    wait_until(lambda: n1.get("/health")[0] == 503 and "redis" in n1.get("/health")[1]["message"], 10,
               what="health 503 naming redis")
    cluster3.redis.start()
    wait_until(lambda: n1.get("/health")[0] == 200, 10, what="health 200 with redis back")


def test_minimum_nodes(make_cluster):
    c = make_cluster(2, extra={"cluster.minimumNodes": 2})
    c.nodes[2].kill9()
    wait_until(lambda: c.nodes[1].get("/health")[0] == 503
               and "minimumNodes" in c.nodes[1].get("/health")[1]["message"], 10, what="503 naming minimumNodes")


def test_duplicate_node_id_refused(cluster3):
    dup = NodeProcess(cluster3.base + "/dup", 2, cluster3.etcd.endpoint, cluster3.redis.url, cluster="test")
    dup.start(wait_healthy=False)
    wait_until(lambda: not dup.proc.alive(), 20, what="duplicate to exit")
    assert dup.proc.p.returncode == 3
    out = dup.proc.output()
    assert "node id 2 is already alive" in out, out[-2000:]
    assert members(cluster3.nodes[1]) == [1, 2, 3]


def run_node(config_text: str, env: dict | None = None, tmp=None) -> subprocess.CompletedProcess:
    path = os.path.join(tmp, "bad.yaml")
    with open(path, "w") as fh:
        fh.write(config_text)
    return subprocess.run([sys.executable, "-m", "mesh", "--config", path], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})})


def test_bad_config_refused_naming_the_key(tmp_path):
    r = run_node("mode: release\n", tmp=str(tmp_path))
    assert r.returncode == 2 and "cluster.nodeId" in r.stderr and "WK_CLUSTER_NODEID" in r.stderr
    r = run_node("cluster:\n  nodeId: 1\n", env={"WK_CLUSTER_REPLICACOUNT": "three"}, tmp=str(tmp_path))
    assert r.returncode == 2 and "cluster.replicaCount" in r.stderr
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    r = subprocess.run([gunicorn, "-c", "ops/gunicorn.conf.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=30, env={**os.environ, "WK_CLUSTER_NODEID": "0"})
    assert r.returncode != 0 and "cluster.nodeId" in r.stderr


def test_gunicorn_node_joins_and_drains_on_sigterm(make_cluster):
    c = make_cluster(2)
    c.gunicorn = True
    g = c.add_node(3)
    wait_table_settled(c, [c.nodes[1], c.nodes[2], g])
    assert g.get("/health")[0] == 200
    master_cmd = open(f"/proc/{g.proc.pid}/cmdline", "rb").read()
    assert b"gunicorn" in master_cmd
    workers = open(f"/proc/{g.proc.pid}/task/{g.proc.pid}/children").read().split()
    assert len(workers) == 1 and set(policies(int(workers[0]))) == {os.SCHED_BATCH}  # the worker runs the node
    wait_until(lambda: slots(c.nodes[1])["slots"] and any(s["leader"] == 3 for s in slots(c.nodes[1])["slots"]),
               10, what="node 3 to lead slots")
    # SIGTERM: health turns 503 before the node leaves, its leaderships move, it leaves at once.
    os.killpg(g.proc.pid, 15)
    saw_503 = wait_until(lambda: http("GET", g.api + "/health")[0] == 503, 5, interval=0.01, what="503 on SIGTERM")
    assert saw_503
    assert 3 in members(c.nodes[1])  # still a member while draining
    wait_until(lambda: members(c.nodes[1]) == [1, 2], 5, what="node 3 gone well before the lease TTL")
    wait_until(lambda: all(s["leader"] in (1, 2) for s in slots(c.nodes[1])["slots"]), 5,
               what="every slot led by a remaining node")
    assert g.proc.p.wait(20) == 0
    out = g.proc.output()
    assert "hand-over done: 0 slot(s) still led here" in out, out[-3000:]


def test_transfer_controller(cluster3):
    wait_table_settled(cluster3)
    n1 = cluster3.nodes[1]
    ctl = n1.get("/cluster/nodes")[1]["leader"]
    target = 3 if ctl != 3 else 2
    code, body = cluster3.nodes[target].post("/cluster/transfer-leadership", {"target_node": target})
    assert code == 200 and body["leader"] == target
    wait_until(lambda: n1.get("/cluster/nodes")[1]["leader"] == target, 5, what="controller moved")
    code, body = n1.post("/cluster/transfer-leadership", {"target_node": 99})
    assert code == 400 and "not a live member" in body["msg"]
    code, body = n1.post("/cluster/transfer-leadership", {"target": "x"})
    assert code == 400
