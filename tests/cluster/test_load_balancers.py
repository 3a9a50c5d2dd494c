"""The committed load balancer configs (ops/nginx.conf, ops/haproxy.cfg) in front of a real 3-node cluster.

For each balancer (Debian's nginx with its stream module, and haproxy), the committed
file is rendered with the test cluster's ports (``tests/support/balancers.py`` rewrites
node addresses, listen ports and log paths, nothing else), checked by the balancer
(``nginx -t`` / ``haproxy -c``) and run in the foreground. Through it: HTTP API calls,
six TCP and six WebSocket WKProto v5 clients, whose CONNACK names the node they landed
on. Then the node holding clients of both transports is killed with ``kill -9``:

* HTTP calls through the balancer succeed again within 5 s, then 30 in a row;
* the balancer takes the node out: haproxy's stats show it DOWN in all five backends
  (its health check, GET /health on the API port); nginx logs it as temporarily
  disabled (passive checks: a refused connection, then the next upstream);
* the clients on the dead node are disconnected, the others still answer pings, and
  the dropped ones reconnect through the balancer and land on live nodes;
* POST /user/token through the balancer works again once the slots have failed over.
"""
from __future__ import annotations

import re
import time

import pytest

from gateway.client import ClientError, WKClient, random_uid
from tests.support.balancers import OPS, Balancer
from tests.support.servers import Cluster, http, wait_until

pytestmark = pytest.mark.cluster

KINDS = ("api", "tcp", "ws", "manager", "demo")
BACKENDS = ("api", "tcp", "ws", "manager", "demo")


def token_for(lb: Balancer, uid: str) -> str:
    token = "tk-" + uid
    code, body = http("POST", lb.url() + "/user/token", {"uid": uid, "token": token, "device_flag": 1,
                                                          "device_level": 1}, timeout=10)
    if code != 200:
        raise ClientError(f"POST /user/token through the balancer: {code} {body}")
    return token


def connect(addr: str, uid: str, token: str) -> WKClient:
    c = WKClient(addr, uid, token, timeout=10)
    c.connect()
    c.ping()
    return c


def reconnect(addr: str, uid: str, token: str, within: float) -> tuple[WKClient, float]:
    """Connect again through the balancer, retrying for ``within`` seconds; (client, seconds taken)."""
    t0 = time.time()
    last: Exception | None = None
    while time.time() - t0 < within:
        try:
            return connect(addr, uid, token), time.time() - t0
        except (ClientError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{uid} could not reconnect through the balancer within {within}s: {last}")


def lb_ok(lb: Balancer, path: str) -> bool:
    try:
        code, _ = http("GET", lb.url() + path, timeout=3)
    except OSError:
        return False
    return code == 200


def all_up(lb: Balancer, nodes: set[int]) -> bool:
    states = lb.server_states()
    return all(states.get((b, f"node{i}")) == "UP" for b in BACKENDS for i in nodes)


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_balancer_routes_around_a_killed_node(kind: str, tmp_path) -> None:
    cluster = Cluster(3)
    lb: Balancer | None = None
    clients: list[WKClient] = []
    ok = False
    try:
        t0 = time.time()
        cluster.start()
        lb = Balancer(kind, cluster.nodes, str(tmp_path))
        lb.start()
        wait_until(lambda: lb_ok(lb, "/health"), 15, interval=0.2, what=f"/health through {kind}")
        if kind == "haproxy":
            wait_until(lambda: all_up(lb, {1, 2, 3}), 15, interval=0.2, what="every server UP in haproxy")
        print(f"\n[{kind}] cluster and balancer up in {time.time() - t0:.1f}s; ports {lb.ports}")

        # HTTP API through the balancer
        code, body = http("GET", lb.url() + "/cluster/nodes")
        assert code == 200 and sorted(n["id"] for n in body["nodes"]) == [1, 2, 3], body
        assert http("GET", lb.url("manager") + "/metrics")[0] == 200
        assert http("GET", lb.url("demo") + "/")[0] == 200

        # six TCP and six WebSocket clients through the balancer, spread over the nodes
        tcp_addr, ws_addr = f"127.0.0.1:{lb.ports['tcp']}", f"ws://127.0.0.1:{lb.ports['ws']}/"
        where: dict[str, tuple[str, int]] = {}  # uid -> (transport, node)
        tokens: dict[str, str] = {}
        for transport, addr in (("tcp", tcp_addr), ("ws", ws_addr)):
            for _ in range(6):
                uid = random_uid(transport)
                tokens[uid] = token_for(lb, uid)
                c = connect(addr, uid, tokens[uid])
                clients.append(c)
                assert c.connack.node_id in (1, 2, 3), c.connack
                where[uid] = (transport, c.connack.node_id)
        spread = {t: sorted(n for tt, n in where.values() if tt == t) for t in ("tcp", "ws")}
        print(f"[{kind}] clients landed on nodes {spread}")
        both = [i for i in (1, 2, 3) if i in spread["tcp"] and i in spread["ws"]]
        assert both, f"no node holds clients of both transports: {spread}"
        victim = max(both, key=lambda i: sum(1 for _, n in where.values() if n == i))
        live = {1, 2, 3} - {victim}

        # kill -9 the node holding the most clients
        t_kill = time.time()
        cluster.nodes[victim].kill9()
        print(f"[{kind}] killed node {victim} (kill -9)")

        # HTTP through the balancer: back within 5 s, then 30 successes in a row
        wait_until(lambda: lb_ok(lb, "/cluster/nodes"), 5, interval=0.1, what=f"HTTP through {kind} after kill -9")
        first_ok = time.time() - t_kill
        for i in range(30):
            path = ("/health", "/cluster/nodes", "/cluster/status")[i % 3]
            code, body = http("GET", lb.url() + path, timeout=5)
            assert code == 200, (i, path, code, body)
        print(f"[{kind}] HTTP through the balancer OK {first_ok:.2f}s after the kill; 30 calls in a row succeeded")

        # the balancer has taken the node out
        if kind == "haproxy":
            def victim_down() -> bool:
                states = lb.server_states()
                return all(states[(b, f"node{victim}")].startswith("DOWN") for b in BACKENDS)
            wait_until(victim_down, 10, interval=0.2, what=f"node {victim} DOWN in every haproxy backend")
            states = lb.server_states()
            assert all(states[(b, f"node{i}")] == "UP" for b in BACKENDS for i in live), states
            print(f"[{kind}] node {victim} DOWN in all backends {time.time() - t_kill:.2f}s after the kill")
        else:
            port = cluster.nodes[victim].ports["api"]
            pattern = re.compile(rf"upstream server temporarily disabled .*upstream: \"http://127\.0\.0\.1:{port}/")
            wait_until(lambda: pattern.search(lb.error_log()), 10, interval=0.2,
                       what=f"nginx marking node {victim}'s API port failed")
            print(f"[{kind}] nginx marked node {victim} failed (passive check): "
                  f"{pattern.search(lb.error_log()).group(0)}")

        # clients on the dead node were dropped; the others still answer
        dropped = [c for c in clients if where[c.uid][1] == victim]
        kept = [c for c in clients if where[c.uid][1] != victim]
        for c in dropped:
            assert c.closed.wait(10), f"{c.uid} on the dead node {victim} was not disconnected"
        for c in kept:
            assert not c.closed.is_set(), f"{c.uid} on node {where[c.uid][1]} lost its connection"
            c.ping()

        # they reconnect through the balancer and land on live nodes (CONNACK node id, v5)
        moved = []
        for c in dropped:
            addr = tcp_addr if where[c.uid][0] == "tcp" else ws_addr
            new, took = reconnect(addr, c.uid, tokens[c.uid], within=20)
            clients.append(new)
            assert new.connack.node_id in live, (c.uid, new.connack.node_id, victim)
            moved.append((where[c.uid][0], new.connack.node_id, round(took, 2)))
        print(f"[{kind}] {len(dropped)} dropped clients reconnected onto live nodes "
              f"(transport, node, seconds): {moved}")

        # writes through the balancer work again once the dead node's slots have moved
        wait_until(lambda: token_for(lb, random_uid("after")), 20, interval=0.2, what="POST /user/token after failover")
        for _ in range(10):
            token_for(lb, random_uid("after"))
        print(f"[{kind}] POST /user/token through the balancer OK; done {time.time() - t_kill:.1f}s after the kill")
        ok = True
    finally:
        for c in clients:
            c.close()
        if lb is not None:
            if not ok:
                print(f"--- {kind} output ---\n{lb.output()[-4000:]}\n--- error log ---\n{lb.error_log()[-4000:]}")
            lb.stop()
        cluster.close()


def _haproxy_layout(path: str) -> dict[str, tuple]:
    """{frontend port: (backend, mode, balance, health check)} of an haproxy config."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    with open(path) as fh:
        for raw in fh:
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if not line[0].isspace():
                current = " ".join(line.split()[:2])
                sections[current] = {}
                continue
            words = line.split()
            if current is not None and words[0] in ("bind", "mode", "balance", "default_backend", "option"):
                key = words[0] if words[0] != "option" else " ".join(words[:2])
                sections[current][key] = " ".join(words[1:])
    layout = {}
    for name, s in sections.items():
        if name.startswith("frontend ") and "default_backend" in s:
            backend = sections["backend " + s["default_backend"]]
            port = int(s["bind"].rsplit(":", 1)[1])
            layout[port] = (s["default_backend"], backend.get("mode"), backend.get("balance"),
                            backend.get("option httpchk"))
    return layout


def test_deployment_haproxy_matches_the_local_one() -> None:
    """ops/haproxy.cfg has the frontends, backends, balancing and health checks of ops/local/haproxy.cfg."""
    deploy = _haproxy_layout(f"{OPS}/haproxy.cfg")
    local = _haproxy_layout(f"{OPS}/local/haproxy.cfg")
    assert deploy == local, (deploy, local)
    assert sorted(deploy) == [15001, 15100, 15172, 15200, 15300]
