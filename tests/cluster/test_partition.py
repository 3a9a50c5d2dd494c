"""A node cut off from etcd and its peers by a real network partition (network namespace).

Node 3 runs in its own network namespace, joined to the host by a veth pair; taking
the host end down isolates it completely. A client inside the namespace keeps writing
to it, mostly to chats whose slots node 3 leads, while a workload on nodes 1 and 2 goes
on. During the partition node 3 must acknowledge nothing; after healing it must rejoin,
discard what it had appended but never got acknowledged, and catch up, and no two
replicas may disagree on any acknowledged entry.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import gevent
import pytest

from coordinator.slot_table import slot_of
from mesh.im.channel_rules import fake_channel_id
from tests.support import netns
from tests.support.clients import LineClient
from tests.support.servers import ROOT, EtcdServer, NodeProcess, RedisServer, http, wait_until
from tests.support.workload import Acked, Workload

pytestmark = pytest.mark.cluster

FAST = {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"}


class Nodes:
    """What the workload needs of a cluster: the nodes it may use now."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes

    def live_nodes(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.proc and n.proc.alive()]


def metric(node: NodeProcess, name: str) -> float:
    text = http("GET", node.manager + "/metrics")[1]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.skipif(not netns.available(), reason="network namespaces need root (CI runs as root)")
def test_partitioned_node_accepts_no_writes_and_rejoins_cleanly():
    ns = netns.Netns()
    base = tempfile.mkdtemp(prefix="skein-part-")
    etcd, redis = EtcdServer(base), RedisServer(base)
    nodes: list[NodeProcess] = []
    sender = None
    wl = None
    ns.create()
    try:
        etcd.start(also_listen=(ns.host_ip,))
        redis.start(also_listen=(ns.host_ip,))
        for i in (1, 2):
            nodes.append(NodeProcess(base, i, etcd.endpoint, redis.url, extra=FAST, host=ns.host_ip))
        n3 = NodeProcess(base, 3, f"{ns.host_ip}:{etcd.port}", f"redis://{ns.host_ip}:{redis.port}/0", extra=FAST,
                         host=ns.ns_ip, netns=ns.name)
        nodes.append(n3)
        for n in nodes:
            n.start(wait_healthy=False)
        for n in nodes:
            n.wait_healthy(45)
        n1 = nodes[0]
        wait_until(lambda: all(s["ready"] for s in http("GET", n1.api + "/cluster/slots")[1]["slots"]), 30,
                   what="slots ready")
        table = http("GET", n1.api + "/cluster/slots")[1]
        led_by_3 = {s["id"] for s in table["slots"] if s["leader"] == 3}
        uid = "nsuser"
        peers_on_3 = [p for p in (f"peer{i}" for i in range(400))
                      if slot_of(fake_channel_id(uid, p), 64) in led_by_3][:4]
        peers_else = [p for p in (f"other{i}" for i in range(400))
                      if slot_of(fake_channel_id(uid, p), 64) not in led_by_3][:1]
        for u in [uid] + peers_on_3 + peers_else:
            assert http("POST", n1.api + "/user/token", {"uid": u, "token": "t-" + u, "device_flag": 1})[0] == 200
        wl = Workload(Nodes(nodes[:2]), pairs=3, groups=1, group_size=3, rate=20)
        wl.setup()
        wl.start()
        sender = LineClient(["ip", "netns", "exec", ns.name, sys.executable,
                             os.path.join(ROOT, "tests", "support", "netns_sender.py"),
                             "--addr", f"{ns.ns_ip}:{n3.ports['tcp']}", "--uid", uid, "--token", "t-" + uid,
                             "--to", ",".join(peers_on_3 + peers_else), "--interval", "0.05"])
        sender.wait(lambda e: e.get("event") == "connected", 20, "partitioned client connected")
        gevent.sleep(3)
        truncated_before = metric(n3, "skein_replication_truncated_entries_total")
        t_cut = time.time()
        ns.cut()
        gevent.sleep(2.5 + 6)
        code, body = http("GET", n1.api + "/cluster/nodes")
        assert code == 200 and sorted(x["id"] for x in body["nodes"]) == [1, 2]
        slots = http("GET", n1.api + "/cluster/slots")[1]["slots"]
        assert all(s["leader"] in (1, 2) for s in slots)
        t_heal = time.time()
        ns.heal()
        n3.wait_healthy(40)
        healed_in = time.time() - t_heal
        gevent.sleep(2)
        wl.stop()
        sender.close()
        lines = [e for e in sender.seen if "cmn" in e]
        while not sender.events.empty():
            e = sender.events.get()
            if "cmn" in e:
                lines.append(e)
        during = [e for e in lines if e["start"] > t_cut + 0.5 and e["end"] < t_heal]
        acked_during = [e for e in during if e["reason"] == 1]
        before = [e for e in lines if e["reason"] == 1 and e["end"] < t_cut]
        for e in before:
            wl.acked[e["cmn"]] = Acked((fake_channel_id(uid, e["channel"]), 1), e["seq"], e["mid"], e["cmn"], uid,
                                       json.dumps({"type": 1, "content": e["cmn"]}).encode())
        truncated = metric(n3, "skein_replication_truncated_entries_total") - truncated_before
        wl.cluster = Nodes(nodes)
        rep = wl.check()
        print("\npartition: " + json.dumps({
            **rep, "sends_during_partition": len(during), "acked_during_partition": len(acked_during),
            "acked_before_partition": len(before), "discarded_on_rejoin": truncated,
            "healthy_after_heal_s": round(healed_in, 1)}))
        assert len(before) > 10
        assert len(during) > 0 and acked_during == [], acked_during[:3]
        assert truncated > 0, "node 3 should have discarded the entries it appended while cut off"
        assert rep["lost"] == 0 and rep["divergent"] == 0 and rep["duplicated"] == 0 and rep["gaps"] == 0, rep
        assert rep["errors"] == 0 and rep["undelivered"] == 0, rep
    finally:
        if sender is not None:
            sender.p.kill()
        if wl is not None:
            wl.close()
        for n in nodes:
            try:
                n.stop(timeout=10)
            except Exception:
                n.kill9()
        redis.stop()
        etcd.stop()
        ns.destroy()
        if not os.environ.get("SKEIN_KEEP_TEST_DIRS"):
            import shutil

            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"test dirs kept in {base}")
