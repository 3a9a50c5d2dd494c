"""A WuKongIM deployment's settings: tokenAuthOn false, cluster-wide user.onlinestatus counts,
and a node started from a WuKongIM-style config file joining the cluster (issue 16 items 3, 4, 7).

One cluster of three real nodes (etcd, Redis, node processes) runs as a WuKongIM
deployment would: ``tokenAuthOn: false`` and a webhook receiver. Its cluster name is
our default, so a node whose file has no Skein-only key but ``etcd.endpoints`` and
``redis.url`` joins it.
"""
from __future__ import annotations

import json
import os
import re
import socket

import gevent
import pytest
import yaml

from gateway import wkproto as wk
from gateway.client import ConnectRefused, WKClient
from tests.cluster.test_messaging import WebhookReceiver
from tests.support.ports import free_port
from tests.support.servers import NodeProcess, ready_cluster, uniq, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def hook():
    h = WebhookReceiver(fail_first=0)
    yield h
    h.server.stop()


@pytest.fixture(scope="module")
def cluster(hook):
    with ready_cluster(extra={"tokenAuthOn": False, "cluster.name": "skein", "webhook.httpAddr": hook.url,
                          "webhook.msgNotifyEventPushInterval": "200ms"}) as c:
        yield c


def client(node, uid: str, token: str = "", **kw) -> WKClient:
    c = WKClient(f"127.0.0.1:{node.ports['tcp']}", uid, token, **kw)
    c.connect()
    return c


def text(s: str) -> bytes:
    return json.dumps({"type": 1, "content": s}).encode()


def statuses(hook, uid: str) -> list[list[str]]:
    """The user.onlinestatus entries of ``uid``, in arrival order, split into their six fields."""
    out = []
    for batch in hook.of("user.onlinestatus"):
        for s in batch:
            if s.startswith(uid + "-"):
                out.append(s[len(uid) + 1:].split("-"))
    return out


def test_token_auth_off_sessions_are_slave_level_and_the_ban_check_runs(cluster, hook):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    u, v, banned = uniq("ta"), uniq("tb"), uniq("tban")
    # no /user/token anywhere: an empty token and any token are accepted
    tab1 = client(n1, u, "", device_flag=1)
    tab2 = client(n2, u, "anything", device_flag=1)  # a second web tab of the same uid (another device id)
    other = client(n3, v, "")
    try:
        # a master login would kick tab1 2 s after tab2's login: both stay (slave level, as in WuKongIM)
        gevent.sleep(3)
        assert not tab1.closed.is_set() and not tab2.closed.is_set()
        assert tab1.disconnects == [] and tab2.disconnects == []
        ack = other.send(u, 1, text("to both tabs"))
        assert ack.reason_code == wk.REASON_SUCCESS
        assert tab1.recv(5).message_id == ack.message_id and tab2.recv(5).message_id == ack.message_id
        # u is online, but only at slave level: msg.offline names it (WuKongIM's push hook)

        def offline():
            return [o for o in hook.of("msg.offline") if o["message_id"] == ack.message_id]
        wait_until(offline, 15, what="msg.offline for a recipient online at slave level only")
        assert offline()[0]["to_uids"] == [u]
        # a banned uid is refused with CONNACK 19 even without token checks
        assert n2.post("/channel/info", {"channel_id": banned, "channel_type": 1, "ban": 1})[0] == 200
        with pytest.raises(ConnectRefused) as e:
            client(n1, banned, "")
        assert e.value.reason == wk.REASON_BAN
        with pytest.raises(ConnectRefused) as e:
            client(n3, banned, "some token")
        assert e.value.reason == wk.REASON_BAN
    finally:
        for c in (tab1, tab2, other):
            c.close()


def test_user_onlinestatus_counts_are_cluster_wide(cluster, hook):
    n1, n3 = cluster.nodes[1], cluster.nodes[3]
    u = uniq("os")
    web = client(n1, u, device_flag=1)
    try:
        wait_until(lambda: len(statuses(hook, u)) >= 1, 15, what="user.onlinestatus of the first connection")
        app = client(n3, u, device_flag=0)
        try:
            wait_until(lambda: len(statuses(hook, u)) >= 2, 15, what="user.onlinestatus of the second connection")
            first, second = statuses(hook, u)[:2]
            # fields: device flag, online, conn id, count of that flag, total over the cluster
            assert (first[0], first[1], first[3], first[4]) == ("1", "1", "1", "1"), first
            assert (second[0], second[1], second[3], second[4]) == ("0", "1", "1", "2"), second
        finally:
            app.close()
        wait_until(lambda: len(statuses(hook, u)) >= 3, 15, what="user.onlinestatus of the app's logout")
        third = statuses(hook, u)[2]
        assert (third[0], third[1], third[3], third[4]) == ("0", "0", "0", "1"), third
    finally:
        web.close()
    wait_until(lambda: len(statuses(hook, u)) >= 4, 15, what="user.onlinestatus of the last logout")
    assert statuses(hook, u)[3][:2] == ["1", "0"] and statuses(hook, u)[3][3:] == ["0", "0"]


def _port_pair() -> int:
    """A port p with p + 1 free too (cluster.serverAddr and the derived PUB port)."""
    for _ in range(100):
        p = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise AssertionError("no free pair of ports")


# The keys the file below carries that Skein accepts and ignores (one warning line each)
EXPECTED_IGNORED = {
    "cluster.initNodes", "cluster.heartbeatTick", "cluster.electionTick", "cluster.maxSizePerMsg",
    "cluster.maxInflightMsgs", "cluster.checkQuorum", "cluster.preVote", "cluster.maxLogSize",
    "cluster.logCompactThreshold", "cluster.snapshotEntries", "cluster.compactionOverhead", "cluster.dialTimeout",
    "cluster.maxConnections", "cluster.keepAlive", "cluster.keepAlivePeriod", "cluster.batchSize",
    "cluster.batchTimeout", "cluster.workerCount", "cluster.queueSize", "cluster.maxMemoryUsage", "cluster.gcInterval",
    "cluster.channelReplicaCount", "logger.lineNum", "logger.traceOn", "conversation.on", "conversation.cacheExpire",
    "messageRetry.workerCount", "managerUID", "stress",
}


def test_a_wukongim_config_file_starts_a_node_that_joins(cluster):
    n1 = cluster.nodes[1]
    node = NodeProcess(cluster.base, 1004, cluster.etcd.endpoint, cluster.redis.url)
    p = node.ports
    router = _port_pair()
    # WuKongIM's keys and types (the guide's cluster file plus §7.3), only etcd.endpoints and redis.url added
    node.cfg = {
        "mode": "release",
        "addr": f"tcp://127.0.0.1:{p['tcp']}",
        "httpAddr": f"127.0.0.1:{p['api']}",
        "wsAddr": f"ws://127.0.0.1:{p['ws']}",
        "connIdleTime": "3m",
        "tokenAuthOn": False,
        "managerUID": "____manager",
        "stress": False,
        "rootDir": os.path.join(node.dir, "wukongim-node4"),
        "logger": {"level": 2, "dir": "", "lineNum": False, "traceOn": False},
        "manager": {"on": True, "addr": f"127.0.0.1:{p['manager']}"},
        "demo": {"on": True, "addr": f"127.0.0.1:{p['demo']}"},
        "cluster": {
            "nodeId": 1004, "serverAddr": f"127.0.0.1:{router}", "slotReplicaCount": 3, "channelReplicaCount": 3,
            "slotCount": 64, "initNodes": ["1001@192.168.1.101:11110", "1004@127.0.0.1:11110"],
            "heartbeatTick": 1, "electionTick": 10, "maxSizePerMsg": 1048576, "maxInflightMsgs": 256,
            "checkQuorum": True, "preVote": True, "maxLogSize": 1073741824, "logCompactThreshold": 10000,
            "snapshotEntries": 10000, "compactionOverhead": 5000, "dialTimeout": "5s", "requestTimeout": "10s",
            "maxConnections": 100, "keepAlive": True, "keepAlivePeriod": "30s", "batchSize": 100,
            "batchTimeout": "10ms", "workerCount": 4, "queueSize": 1000, "maxMemoryUsage": "2GB", "gcInterval": "5m",
        },
        "external": {"ip": "127.0.0.1", "tcpAddr": f"127.0.0.1:{p['tcp']}", "wsAddr": f"ws://127.0.0.1:{p['ws']}",
                     "apiUrl": f"http://127.0.0.1:{p['api']}"},
        "conversation": {"on": True, "cacheExpire": "2h"},
        "messageRetry": {"interval": "60s", "maxCount": 5, "workerCount": 128},
        "etcd": {"endpoints": [cluster.etcd.endpoint]},
        "redis": {"url": cluster.redis.url},
    }
    with open(node.config_path, "w") as fh:
        yaml.safe_dump(node.cfg, fh)
    cluster.nodes[1004] = node  # stopped with the cluster
    node.start(timeout=45)

    def joined():
        body = n1.get("/cluster/nodes")[1]
        return 1004 in [x["id"] for x in body["nodes"]]
    wait_until(joined, 20, what="node 1004 in node 1's /cluster/nodes")
    wait_until(lambda: n1.get("/cluster/nodes/1004")[1]["slot_replicas"] >= 1, 120, interval=1,
               what="node 1004 to hold slot replicas")
    # it serves clients on the port `addr` named, and talks to the rest of the cluster
    a, b = uniq("cfa"), uniq("cfb")
    ca, cb = client(node, a), client(n1, b)
    try:
        ack = ca.send(b, 1, text("from a node configured the WuKongIM way"))
        assert ack.reason_code == wk.REASON_SUCCESS
        assert cb.recv(5).message_id == ack.message_id
    finally:
        ca.close()
        cb.close()
    # its start-up log names exactly the ignored keys, one warning line each, and nothing unknown
    log = node.proc.output()
    ignored = re.findall(r"WARNING .*config key (\S+) accepted for WuKongIM compatibility and ignored", log)
    assert sorted(ignored) == sorted(EXPECTED_IGNORED), log[-3000:]
    assert "unknown config keys" not in log
    started = next(line for line in log.splitlines() if "starting node: config=" in line)
    values = json.loads(started.split("config=", 1)[1])
    assert values["tcpAddr"] == f"127.0.0.1:{p['tcp']}" and values["conn.idleTimeout"] == 180.0
    assert values["cluster.replicaCount"] == 3 and values["logger.level"] == "INFO"
