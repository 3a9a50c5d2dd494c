"""Backup and restore: a node rebuilt from its backup, and a whole cluster restored into fresh dirs."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest

from gateway.client import WKClient
from tests.support.servers import ROOT, Cluster, http, wait_until

pytestmark = pytest.mark.cluster

FAST = {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"}


def run(*args: str) -> str:
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def history(node, uid: str, channel: str, ctype: int) -> list:
    code, body = http("POST", node.api + "/channel/messagesync",
                      {"login_uid": uid, "channel_id": channel, "channel_type": ctype, "limit": 1000})
    assert code == 200, body
    return [(m["message_seq"], m["message_id"], m["client_msg_no"], m["payload"]) for m in body["messages"]]


def fill(c: Cluster) -> dict:
    n1 = c.nodes[1]
    for uid in ("ann", "bob", "cat"):
        assert http("POST", n1.api + "/user/token", {"uid": uid, "token": "t-" + uid, "device_flag": 1})[0] == 200
    assert http("POST", n1.api + "/channel", {"channel_id": "team", "channel_type": 2,
                                              "subscribers": ["ann", "bob", "cat"]})[0] == 200
    ann = WKClient(f"127.0.0.1:{c.nodes[2].ports['tcp']}", "ann", "t-ann")
    ann.connect()
    for i in range(30):
        assert ann.send("bob", 1, json.dumps({"type": 1, "content": f"dm {i}"}).encode()).reason_code == 1
        assert ann.send("team", 2, json.dumps({"type": 1, "content": f"team {i}"}).encode()).reason_code == 1
    ann.close()
    for i in range(10):
        body = {"from_uid": "cat", "channel_id": "team", "channel_type": 2,
                "payload": base64.b64encode(json.dumps({"type": 1, "content": f"api {i}"}).encode()).decode()}
        assert http("POST", c.nodes[3].api + "/message/send", body)[0] == 200
    assert http("POST", n1.api + "/conversations/clearUnread",
                {"uid": "bob", "channel_id": "ann", "channel_type": 1})[0] == 200
    return {"dm": history(n1, "bob", "ann", 1), "team": history(n1, "bob", "team", 2)}


def converged(c: Cluster) -> bool:
    for n in c.live_nodes():
        body = http("GET", n.api + "/cluster/data/version")[1]
        if any(s["local_applied"] is not None and s["commit_index"] is not None
               and s["local_applied"] < s["commit_index"] for s in body["slots"]):
            return False
    return True


def test_backup_node_restore_and_whole_cluster_restore(tmp_path):
    c = Cluster(3, extra=FAST)
    fresh = None
    try:
        c.start()
        wait_until(lambda: all(s["ready"] for s in http("GET", c.nodes[1].api + "/cluster/slots")[1]["slots"]), 30,
                   what="slots ready")
        before = fill(c)
        assert len(before["dm"]) == 30 and len(before["team"]) == 40
        wait_until(lambda: converged(c), 30, what="replicas converged")
        out = str(tmp_path / "backup")
        printed = run("ops/backup", "--api", c.nodes[1].api, "--out", out)
        print(printed)
        assert sorted(os.listdir(out)) == ["node1", "node2", "node3"]

        # one node rebuilt from its backup: wipe node 2's data, restore, start, catch up
        n2 = c.nodes[2]
        n2.stop()
        shutil.rmtree(n2.cfg["rootDir"])
        print(run("ops/restore", "node", "--from", os.path.join(out, "node2"), "--root", n2.cfg["rootDir"]))
        n2.start(timeout=60)
        wait_until(lambda: converged(c), 30, what="restored node caught up")
        assert history(n2, "bob", "ann", 1) == before["dm"] and history(n2, "bob", "team", 2) == before["team"]

        # the whole cluster restored into fresh data dirs, a fresh etcd and a fresh Redis
        for n in c.nodes.values():
            n.stop()
        fresh = Cluster(3, extra=FAST)
        fresh.etcd.start()
        fresh.redis.start()
        print(run("ops/restore", "cluster", "--from", out, "--root-pattern",
                  os.path.join(fresh.base, "node{id}", "data"), "--etcd", fresh.etcd.endpoint, "--name", "test"))
        for i in (1, 2, 3):
            fresh.add_node(i, wait=False)
        for n in fresh.nodes.values():
            n.wait_healthy(60)
        r1 = fresh.nodes[1]
        wait_until(lambda: all(s["ready"] for s in http("GET", r1.api + "/cluster/slots")[1]["slots"]), 30,
                   what="restored slots ready")
        assert history(r1, "bob", "ann", 1) == before["dm"]
        assert history(fresh.nodes[3], "cat", "team", 2) == before["team"]
        conv = http("POST", r1.api + "/conversation/sync", {"uid": "bob", "msg_count": 1})[1]
        by = {x["channel_id"]: x for x in conv}
        assert by["ann"]["unread"] == 0 and by["team"]["unread"] == 40
        bob = WKClient(f"127.0.0.1:{fresh.nodes[2].ports['tcp']}", "bob", "t-bob")  # tokens came back too
        bob.connect()
        ack = bob.send("team", 2, json.dumps({"type": 1, "content": "after restore"}).encode())
        assert ack.reason_code == 1 and ack.message_seq == 41  # the channel goes on where it was
        bob.close()
    finally:
        c.close()
        if fresh is not None:
            fresh.close()
