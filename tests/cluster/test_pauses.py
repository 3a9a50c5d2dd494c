"""Pauses and graceful restarts under load (issue 12, black-box tests 1, 2 and 6).

Each test runs a 3-node cluster under gunicorn (as in production) with the steady 1:1
and group workload of ``tests.support.workload`` throughout, and a watcher polling
every node's slot-table version at 20 Hz (6: through every failover, no node's
version ever goes down). At the end the checker reads every replica: lost =
duplicated = gaps = divergent = 0.

* ``test_frozen_leader_behind_the_balancers`` (1): the committed haproxy and nginx
  configs in front; the leader of the busiest slots is frozen (SIGSTOP) for 12 s,
  longer than its lease, then resumed. GET calls through both balancers (API, manager
  page, manager overview) keep answering 200 throughout, and haproxy marks the node
  DOWN within its check interval.
* ``test_graceful_restarts_after_a_freeze`` (2): a node is frozen for 6 s and resumed,
  and right after, every node is restarted gracefully (SIGTERM) in turn, twice: each
  node's processes are gone within 10 s of its SIGTERM, and after each restart every
  slot of ``/cluster/replication`` is ready within 10 s.
"""
from __future__ import annotations

import json
import time
from collections import Counter

import gevent
import pytest

from coordinator.slot_table import slot_of
from mesh.im.channel_rules import fake_channel_id
from tests.support.balancers import Balancer
from tests.support.faults import HttpProbe, VersionWatcher, freeze, resume, sigterm_and_wait, slots_ready
from tests.support.servers import http, wait_until
from tests.support.workload import Workload, cluster_under_load

pytestmark = pytest.mark.cluster

FAST = {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"}
BACKENDS = ("api", "tcp", "ws", "manager", "demo")


def busiest_leader(cluster, wl: Workload) -> int:
    table = http("GET", cluster.nodes[1].api + "/cluster/slots")[1]
    keys = [fake_channel_id(a, b) for a, b in wl.person] + list(wl.groups)
    leaders = Counter(table["slots"][slot_of(k, table["slotCount"])]["leader"] for k in keys)
    return leaders.most_common(1)[0][0]


def check_replicas(wl: Workload, watcher: VersionWatcher) -> None:
    rep = wl.check()
    print("workload: " + json.dumps(rep))
    if rep["lost"]:
        print("lost samples (cmn, channel, seq, mid, sender):", wl.lost_samples)
    print(f"slot-table version watcher: {watcher.polls} polls, versions seen per node "
          f"{ {n: (min(v), max(v)) for n, v in watcher.seen.items()} }, drops {watcher.drops}")
    assert rep["acked"] > 0
    for key in ("lost", "duplicated", "gaps", "divergent", "undelivered", "errors"):
        assert rep[key] == 0, rep
    assert watcher.polls > 100 and not watcher.drops, watcher.drops


@pytest.mark.timeout(600)  # about a minute; more on a loaded machine
def test_frozen_leader_behind_the_balancers():
    with cluster_under_load(3, FAST, gunicorn=True, pairs=3, groups=2, group_size=3, rate=30) as (c, wl):
        lbs = [Balancer("haproxy", c.nodes, c.base), Balancer("nginx", c.nodes, c.base)]
        probes = []
        watcher = VersionWatcher(c.nodes, hz=20)
        try:
            for lb in lbs:
                lb.start()
            haproxy = lbs[0]

            def all_up() -> bool:
                states = haproxy.server_states()
                return all(states.get((b, f"node{i}")) == "UP" for b in BACKENDS for i in (1, 2, 3))
            wait_until(all_up, 15, interval=0.2, what="every server UP in haproxy")
            for lb in lbs:
                probe = HttpProbe([lb.url("api") + "/cluster/slots", lb.url("manager") + "/",
                                   lb.url("manager") + "/manager/overview"], interval=0.1, timeout=15)
                probe.kind = lb.kind
                probe.start()
                probes.append(probe)
            watcher.start()
            gevent.sleep(3)
            victim = busiest_leader(c, wl)
            for p in probes:
                p.phase = "freeze"
            t_freeze = time.monotonic()
            freeze(c.nodes[victim])
            down_after = None
            try:
                while time.monotonic() - t_freeze < 12:
                    if down_after is None:
                        states = haproxy.server_states()
                        if all(states[(b, f"node{victim}")].startswith("DOWN") for b in BACKENDS):
                            down_after = time.monotonic() - t_freeze
                    gevent.sleep(0.1)
            finally:
                resume(c.nodes[victim])
            for p in probes:
                p.phase = "after"
            gevent.sleep(5)
            print(f"\nnode {victim} frozen for 12 s; haproxy marked it DOWN after "
                  f"{down_after if down_after is None else round(down_after, 2)} s")
            for p in probes:
                print(f"through {p.kind} during the freeze: {json.dumps(p.summary('freeze'))}; "
                      f"after it: {json.dumps(p.summary('after'))}")
        finally:
            watcher.stop()
            for p in probes:
                p.stop()
            for lb in lbs:
                lb.stop()
        wl.stop()
        check_replicas(wl, watcher)
        for p in probes:
            assert p.calls["freeze"] > 10 and not p.failures["freeze"], (p.kind, p.summary("freeze"))
        assert down_after is not None and down_after < 6, down_after


@pytest.mark.timeout(600)  # about two minutes; more on a loaded machine
def test_graceful_restarts_after_a_freeze():
    with cluster_under_load(3, FAST, gunicorn=True, pairs=3, groups=2, group_size=3, rate=30) as (c, wl):
        watcher = VersionWatcher(c.nodes, hz=20)
        watcher.start()
        gone, ready = [], []
        try:
            gevent.sleep(3)
            victim = busiest_leader(c, wl)
            freeze(c.nodes[victim])
            try:
                gevent.sleep(6)
            finally:
                resume(c.nodes[victim])
            order = [n for n in (1, 2, 3) if n != victim] + [victim]  # the first one right after the resume
            for _round in range(2):
                for nid in order:
                    node = c.nodes[nid]
                    took = sigterm_and_wait(node, timeout=30)
                    gone.append((nid, round(took, 2)))
                    assert took < 10, f"node {nid}'s processes were still running {took:.1f}s after its SIGTERM"
                    node.start(timeout=45)
                    t_up = time.monotonic()
                    try:
                        wait_until(lambda node=node: slots_ready(node), 10, interval=0.1,
                                   what=f"every slot ready after node {nid}'s restart")
                    except AssertionError:
                        stuck = [s["slot"] for s in http("GET", node.api + "/cluster/replication")[1]["slots"]
                                 if not s["ready"]]
                        raise AssertionError(f"slot(s) {stuck} not ready 10 s after node {nid}'s restart; "
                                             f"earlier restarts (node, seconds): {ready}") from None
                    ready.append((nid, round(time.monotonic() - t_up, 2)))
            gevent.sleep(2)
        finally:
            watcher.stop()
            print(f"\nnode {victim} frozen 6 s, then graceful restarts "
                  f"(node, seconds until its processes were gone): {gone}")
            print(f"every slot ready after each restart (node, seconds after it was healthy): {ready}")
        wl.stop()
        check_replicas(wl, watcher)
