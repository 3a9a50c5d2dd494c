"""Security: CURVE on node-to-node traffic, and secrets kept out of logs and answers."""
from __future__ import annotations

import json
import time

import msgpack
import pytest
import zmq

from mesh.net.curve import generate
from tests.support.servers import Cluster, NodeProcess, http, wait_until

pytestmark = pytest.mark.cluster


def raw_request(addr: str, method: str, payload, keys: dict | None, timeout: float = 2.0):
    """One request to a node's ROUTER with a plain DEALER (optionally CURVE keys); None if no answer."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, b"1:forged")
    if keys:
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = keys["public"], keys["secret"], keys["server"]
    s.connect(f"tcp://{addr}")
    try:
        s.send(msgpack.packb([1, method, payload], use_bin_type=True))
        if s.poll(int(timeout * 1000)):
            return msgpack.unpackb(s.recv(), raw=False)
        return None
    finally:
        s.close(0)
        ctx.term()


def test_curve_keeps_out_nodes_without_the_cluster_keys():
    pub, sec = generate()
    c = Cluster(2, extra={"cluster.curvePublicKey": pub, "cluster.curveSecretKey": sec, "managerToken": "mt-secret"})
    try:
        c.start()
        n1 = c.nodes[1]
        hdr = {"token": "mt-secret"}
        wait_until(lambda: all(s["ready"] for s in http("GET", n1.api + "/cluster/slots", headers=hdr)[1]["slots"]),
                   30, what="slots ready")
        # the cluster works with CURVE on: nodes see and reach each other
        nodes = http("GET", n1.api + "/cluster/nodes", headers=hdr)[1]["nodes"]
        assert all(x["reachable"] for x in nodes) and len(nodes) == 2
        assert http("POST", n1.api + "/channel", {"channel_id": "g", "channel_type": 2, "subscribers": ["a"]},
                    headers=hdr)[0] == 200
        # a node with other keys registers in etcd but can reach nobody and gets no slot
        wrong_pub, wrong_sec = generate()
        rogue = NodeProcess(c.base, 3, c.etcd.endpoint, c.redis.url,
                            extra={"cluster.curvePublicKey": wrong_pub, "cluster.curveSecretKey": wrong_sec,
                                   "cluster.leaseTTL": 2})
        c.nodes[3] = rogue
        rogue.start(wait_healthy=False)
        wait_until(lambda: 3 in [x["id"] for x in http("GET", n1.api + "/cluster/nodes", headers=hdr)[1]["nodes"]],
                   20, what="rogue node registered in etcd")
        time.sleep(4)
        nodes = {x["id"]: x for x in http("GET", n1.api + "/cluster/nodes", headers=hdr)[1]["nodes"]}
        assert nodes[3]["reachable"] is False and nodes[2]["reachable"] is True
        table = http("GET", n1.api + "/cluster/slots", headers=hdr)[1]
        assert all(3 not in s["replicas"] + s["learners"] for s in table["slots"])
        rogue_view = http("GET", rogue.api + "/cluster/nodes")[1]
        assert all(not x["reachable"] for x in rogue_view["nodes"] if x["id"] != 3)
        # forged requests straight at a node's ROUTER: no keys, or the wrong keys, get no answer
        router = f"127.0.0.1:{n1.ports['router']}"
        seq_before = http("GET", n1.api + "/channel/max_message_seq?channel_id=g&channel_type=2", headers=hdr)[1]
        forged = [0, "a", "g", 2, b'{"type":1,"content":"forged"}', "cmn-forged", 2, 0, 0, "", 1, 0, 0, True, None]
        assert raw_request(router, "ping", None, None) is None
        assert raw_request(router, "msg.send", [forged], None) is None
        wrong = {"public": wrong_pub.encode(), "secret": wrong_sec.encode(), "server": pub.encode()}
        assert raw_request(router, "msg.send", [forged], wrong) is None
        right = {"public": pub.encode(), "secret": sec.encode(), "server": pub.encode()}
        assert raw_request(router, "ping", None, right)[1] == 0  # the real keys do get an answer
        assert http("GET", n1.api + "/channel/max_message_seq?channel_id=g&channel_type=2", headers=hdr)[1] == \
            seq_before
        out = n1.proc.output()
        assert "refused a node-to-node connection" in out
        # secrets never reach the logs or the API
        for node in (n1, c.nodes[2], rogue):
            log = node.proc.output()
            assert sec not in log and wrong_sec not in log and "mt-secret" not in log
        varz = json.dumps(http("GET", n1.api + "/varz", headers=hdr)[1])
        assert sec not in varz and "mt-secret" not in varz
    finally:
        c.close()


def test_etcd_and_redis_credentials_come_from_config(tmp_path):
    import subprocess
    import tempfile

    from tests.support.servers import EtcdServer, RedisServer

    base = tempfile.mkdtemp(prefix="skein-auth-")
    etcd, redis = EtcdServer(base), RedisServer(base)
    node = bad = None
    try:
        etcd.start()
        ep = ["--endpoints", etcd.endpoint]
        for cmd in (["user", "add", "root", "--new-user-password=etcd-pw-123"], ["auth", "enable"]):
            r = subprocess.run(["etcdctl", *ep, *cmd], capture_output=True, text=True,
                               env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
            assert r.returncode == 0, r.stderr
        redis.start(password="redis-pw-456")
        url = f"redis://127.0.0.1:{redis.port}/0"
        node = NodeProcess(base, 1, etcd.endpoint, url,
                           extra={"etcd.username": "root", "etcd.password": "etcd-pw-123",
                                  "redis.password": "redis-pw-456"})
        node.start(timeout=40)
        assert node.get("/health") == (200, {"status": "ok"})
        log = node.proc.output()
        assert "etcd-pw-123" not in log and "redis-pw-456" not in log
        bad = NodeProcess(base, 2, etcd.endpoint, url,
                          extra={"etcd.username": "root", "etcd.password": "wrong", "redis.password": "redis-pw-456"})
        bad.start(wait_healthy=False)
        wait_until(lambda: not bad.proc.alive(), 40, what="node with a wrong etcd password to stop")
        out = bad.proc.output()
        assert bad.proc.p.returncode != 0 and "etcd" in out.lower() and "wrong" not in out
    finally:
        for n in (node, bad):
            if n is not None:
                n.kill9()
        redis.stop()
        etcd.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
