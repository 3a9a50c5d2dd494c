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
import subprocess
import time
import uuid

import gevent
import pytest

from gateway.client import WKClient
from tests.support.servers import Cluster, NodeProcess, http, wait_until
from tests.support.workload import cluster_under_load

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
    table = http("GET", node.api + "/cluster/slots")[1]
    out["not_ready_at_200"] = sum(1 for s in table["slots"] if not s["ready"])
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
        # /health turned 200 only once every slot had a ready leader (a few may be moving again
        # by the time /cluster/slots is read, as the controller balances leaders over the nodes)
        assert r["not_ready_at_200"] < 16, (nid, r)
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
        print("\nfresh cluster, first calls per node:", {n: {k: v[0] if isinstance(v, tuple) else v for k, v in r.items()}
                                                       for n, r in fresh.items()})
        assert_all_200(fresh)
        for node in cluster.nodes.values():
            node.stop(timeout=20)
        again = start_all_and_call_first(cluster, "b")
        print("after a full restart, first calls per node:",
              {n: {k: v[0] if isinstance(v, tuple) else v for k, v in r.items()} for n, r in again.items()})
        assert_all_200(again)
        # what the first cluster wrote is still there
        n1 = cluster.nodes[1]
        code, got = n1.post("/channel/messagesync", {"login_uid": "hau1", "channel_id": "hag1", "channel_type": 2,
                                                      "start_message_seq": 1, "end_message_seq": 0, "limit": 10})
        assert code == 200 and len(got["messages"]) == 1, got
    finally:
        cluster.close()


# ---------------------------------------------------------------------------- lost slot table (i)
def slots_of(node) -> dict:
    return http("GET", node.api + "/cluster/slots")[1]


def test_slot_table_deleted_from_etcd_is_rebuilt_from_the_replicas_under_load():
    with cluster_under_load(3, FAST, pairs=3, groups=2, group_size=3, rate=30) as (c, wl):
        gevent.sleep(3)
        n1 = c.nodes[1]
        # a graceful restart first, so terms are past 1 and leaders not where a new table would put them
        c.nodes[3].stop()
        wl.drop_clients_of(3)
        c.nodes[3].start(timeout=30)
        before = wait_until(lambda: (t := slots_of(n1)) and all(s["ready"] for s in t["slots"]) and t, 20,
                            what="every slot ready after the restart")
        gevent.sleep(2)
        before = slots_of(n1)
        assert all(s["ready"] for s in before["slots"]) and max(s["term"] for s in before["slots"]) > 1
        old = {s["id"]: s for s in before["slots"]}
        out = subprocess.run(["etcdctl", "--endpoints", c.etcd.endpoint, "del", "/skein/test/slots"],
                             capture_output=True, text=True, timeout=10)
        assert out.stdout.strip() == "1", (out.stdout, out.stderr)
        t0 = time.monotonic()
        seen_versions = []

        def rebuilt():
            t = slots_of(n1)
            seen_versions.append(t["version"])
            fresh = t["version"] != before["version"]  # the view shows a table written after the delete
            return t if fresh and t["slots"] and all(s["ready"] for s in t["slots"]) else None
        after = wait_until(rebuilt, 30, interval=0.1, what="slot table rebuilt and every slot ready")
        took = time.monotonic() - t0
        print(f"\nslot table rebuilt and every slot ready {took:.1f}s after the key was deleted: "
              f"v{before['version']} -> v{after['version']}")
        assert after["version"] > before["version"]
        for s in after["slots"]:
            o = old[s["id"]]
            assert s["leader"] in o["replicas"], (s, o)  # led by a node that held the slot's data
            assert set(s["replicas"]) <= set(o["replicas"] + o["learners"]), (s, o)
            assert s["term"] > o["term"], (s, o)  # terms never restart below what replicas remember
        log = "".join(n.proc.output() for n in c.nodes.values())
        assert "rebuilding it from the reports" in log
        gevent.sleep(3)
        wl.stop()
        rep = wl.check()
        report("slot table deleted under load", rep)
        assert_clean(rep)


# ---------------------------------------------------------------------------- Redis loss (j)
def online_right(node, online: list[str], offline: list[str]) -> bool:
    code, got = http("POST", node.api + "/user/onlinestatus", online + offline, timeout=3)
    if code != 200:
        return False
    on = {r["uid"] for r in got if r.get("online") == 1}
    return set(online) <= on and not (set(offline) & on)


def test_redis_flush_and_restart_presence_back_within_5s_no_spurious_offline_webhooks():
    from tests.cluster.test_messaging import WebhookReceiver

    hook = WebhookReceiver(fail_first=0)
    extra = {**FAST, "webhook.httpAddr": hook.url, "webhook.msgNotifyEventPushInterval": "100ms"}
    try:
        with cluster_under_load(3, extra, pairs=3, groups=2, group_size=3, rate=30) as (c, wl):
            nodes = list(c.nodes.values())
            tag = uuid.uuid4().hex[:6]
            stay = [f"r{tag}s{i}" for i in range(3)]  # master-level users that stay connected throughout
            ghost = f"r{tag}ghost"  # never connected: gets msg.offline
            sender = f"r{tag}from"
            for u in stay + [ghost, sender]:
                assert nodes[0].post("/user/token", {"uid": u, "token": "t-" + u, "device_flag": 1,
                                                     "device_level": 1})[0] == 200
            clients = []
            for i, u in enumerate(stay):
                n = nodes[i % 3]
                cl = WKClient(f"127.0.0.1:{n.ports['tcp']}", u, "t-" + u)
                cl.connect()
                clients.append(cl)
            wl_online = [m.uid for m in wl.members.values()]
            sent = {"n": 0, "failed": 0}
            to_ghost: list[tuple[float, int]] = []  # (when, message id) of sends to the offline user
            running = [True]

            def chatter():
                i = 0
                while running[0]:
                    i += 1
                    to = stay[i % len(stay)] if i % 4 else ghost
                    n = nodes[i % 3]
                    try:
                        code, got = http("POST", n.api + "/message/send", {"header": {}, "from_uid": sender,
                                                                           "channel_id": to, "channel_type": 1,
                                                                           "payload": "aGk="}, timeout=20)
                    except OSError:
                        code, got = 0, None
                    sent["n" if code == 200 else "failed"] += 1
                    if code == 200 and to == ghost:
                        to_ghost.append((time.monotonic(), got["data"]["message_id"]))
                    gevent.sleep(0.05)
            g = gevent.spawn(chatter)
            wait_until(lambda: all(online_right(n, stay + wl_online, [ghost]) for n in nodes), 10,
                       what="presence right before the fault")
            gevent.sleep(2)
            offline_before = len(hook.of("msg.offline"))

            subprocess.run(["redis-cli", "-p", str(c.redis.port), "flushall"], check=True, capture_output=True)
            t0 = time.monotonic()
            wait_until(lambda: all(online_right(n, stay + wl_online, [ghost]) for n in nodes), 5, interval=0.1,
                       what="presence right again within 5 s of FLUSHALL")
            print(f"\npresence right again {time.monotonic() - t0:.1f}s after FLUSHALL")
            gevent.sleep(2)

            c.redis.proc.kill9()
            c.redis.proc = None
            t_kill = time.monotonic()
            gevent.sleep(3)  # sends go on while Redis is down; their webhook events wait on the nodes
            c.redis.start()
            t0 = time.monotonic()
            wait_until(lambda: all(online_right(n, stay + wl_online, [ghost]) for n in nodes), 5, interval=0.1,
                       what="presence right again within 5 s of Redis's restart")
            print(f"presence right again {time.monotonic() - t0:.1f}s after Redis restarted")
            for n in nodes:
                code, route = n.get(f"/route?uid={stay[0]}")
                assert code == 200 and route["tcp_addr"], route
            gevent.sleep(3)
            running[0] = False
            g.join(timeout=30)
            wl.stop()

            def offline_to(uids):
                return [o for o in hook.of("msg.offline") if set(o["to_uids"]) & set(uids)]
            # msg.offline of every send to the offline user since Redis was killed arrives (the ones
            # made while it was down waited on the nodes); the FLUSHALL itself lost what the stream held
            want = {mid for t, mid in to_ghost if t > t_kill}
            assert len([t for t, _m in to_ghost if t_kill < t < t_kill + 3]) > 0, "no send while Redis was down"
            wait_until(lambda: want <= {o["message_id"] for o in offline_to([ghost])}, 20,
                       what="msg.offline for the offline user, including the ones queued while Redis was down")
            spurious = offline_to(stay)
            print(f"sends {sent}, msg.offline total {len(hook.of('msg.offline'))} (before the fault "
                  f"{offline_before}), to the offline user {len(offline_to([ghost]))}, "
                  f"to users who stayed connected {len(spurious)}")
            assert spurious == [], spurious[:3]
            assert all(not cl.closed.is_set() for cl in clients)
            rep = wl.check()
            report("Redis flushed, killed and restarted under load", rep)
            assert_clean(rep)
            for cl in clients:
                cl.close()
    finally:
        hook.server.stop()


# ---------------------------------------------------------------------------- etcd outage
def test_etcd_killed_for_10s_writes_resume_within_5s_of_its_return():
    with cluster_under_load(3, FAST, pairs=3, groups=2, group_size=3, rate=30) as (c, wl):
        nodes = list(c.nodes.values())
        gid = f"e{uuid.uuid4().hex[:6]}"
        assert nodes[0].post("/channel", {"channel_id": gid, "channel_type": 2, "subscribers": ["eu1"]})[0] == 200
        gevent.sleep(3)
        c.etcd.kill()
        t_kill = time.monotonic()
        gevent.sleep(10)
        c.etcd.start(existing=True)
        t_back = time.monotonic()
        print(f"\netcd down for {t_back - t_kill:.1f}s")

        def write_ok(n) -> float:
            while time.monotonic() - t_back < 60:
                try:
                    code, _ = http("POST", n.api + "/message/send", {"header": {}, "from_uid": "eu1",
                                                                     "channel_id": gid, "channel_type": 2,
                                                                     "payload": "aGk="}, timeout=6)
                except OSError:
                    code = 0
                if code == 200:
                    return time.monotonic() - t_back
                gevent.sleep(0.1)
            return 999.0
        gs = [gevent.spawn(write_ok, n) for n in nodes]
        gevent.joinall(gs)
        resumed = {n.node_id: round(g.value, 2) for n, g in zip(nodes, gs)}
        print(f"first successful /message/send per node, seconds after etcd's return: {resumed}")
        gevent.sleep(2)
        wl.stop()
        rep = wl.check()
        report("etcd killed for 10 s under load", rep)
        assert max(resumed.values()) <= 5.0, resumed
        assert_clean(rep)
