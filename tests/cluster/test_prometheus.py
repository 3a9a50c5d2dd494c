"""ops/prometheus.yml and ops/grafana/skein-dashboard.json against a real Prometheus and a 3-node cluster.

Debian's ``prometheus`` runs a rendered copy of the committed ``ops/prometheus.yml``
(targets moved to the test cluster's management ports by their ``id`` label, scrape
interval 1 s, ``tests/support/balancers.py``); its HTTP API must report the three
targets up (``/api/v1/targets`` and the query ``up``). Every expression of the Grafana
dashboard is then evaluated by that Prometheus (so each is valid PromQL over the real
series), and every metric it names must be one ``mesh/base/metrics.py`` defines.
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.parse

import pytest

from tests.support.balancers import OPS, Prometheus
from tests.support.servers import Cluster, http, wait_until

pytestmark = pytest.mark.cluster

DASHBOARD = os.path.join(OPS, "grafana", "skein-dashboard.json")


def query(prom: Prometheus, expr: str) -> dict:
    code, body = http("GET", f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5)
    assert code == 200 and body["status"] == "success", (expr, code, body)
    return body["data"]


def targets_up(prom: Prometheus) -> list[dict] | None:
    code, body = http("GET", f"{prom.url}/api/v1/targets", timeout=5)
    active = body["data"]["activeTargets"] if code == 200 else []
    if len(active) == 3 and all(t["health"] == "up" for t in active):
        return active
    return None


def dashboard_exprs() -> list[tuple[str, str]]:
    with open(DASHBOARD) as fh:
        dash = json.load(fh)
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables filled in as Grafana would (all nodes, 1m)."""
    return expr.replace("$__rate_interval", "1m").replace("$id", ".*")


def test_prometheus_scrapes_every_node(tmp_path) -> None:
    cluster = Cluster(3)
    prom: Prometheus | None = None
    ok = False
    try:
        cluster.start()
        prom = Prometheus({i: n.ports["manager"] for i, n in cluster.nodes.items()}, str(tmp_path))
        prom.start()
        t0 = time.time()
        active = wait_until(lambda: targets_up(prom), 30, interval=0.5, what="3 targets up in /api/v1/targets")
        print(f"\n/api/v1/targets: all 3 up {time.time() - t0:.1f}s after Prometheus started:")
        for t in sorted(active, key=lambda t: t["labels"]["id"]):
            print(f"  id={t['labels']['id']} job={t['labels']['job']} {t['scrapeUrl']} health={t['health']}")
        assert sorted(t["labels"]["id"] for t in active) == ["1", "2", "3"]
        assert {t["labels"]["job"] for t in active} == {"skein"}
        assert sorted(t["scrapeUrl"] for t in active) == sorted(f"{n.manager}/metrics" for n in cluster.nodes.values())

        data = wait_until(lambda: (d := query(prom, "up")) and len(d["result"]) == 3 and d, 10, interval=0.5,
                          what="3 series for the query up")
        print("query: up")
        print("answer:", json.dumps(data))
        assert data["resultType"] == "vector"
        assert sorted((r["metric"]["id"], r["value"][1]) for r in data["result"]) == [("1", "1"), ("2", "1"), ("3", "1")]

        # the node's own metrics arrive with the id label
        data = query(prom, "skein_node_healthy")
        assert sorted((r["metric"]["id"], r["value"][1]) for r in data["result"]) == [("1", "1"), ("2", "1"), ("3", "1")]
        wait_until(lambda: (d := query(prom, "sum(skein_slots_led)")["result"]) and float(d[0]["value"][1]) == 64,
                   10, interval=0.5, what="the 64 slots led, summed over the nodes")

        # every dashboard expression is valid PromQL and runs over the real series
        exprs = dashboard_exprs()
        for _title, expr in exprs:
            query(prom, concrete(expr))
        print(f"{len(exprs)} dashboard expressions evaluated by Prometheus without error")
        ok = True
    finally:
        if prom is not None:
            if not ok:
                print(prom.output()[-4000:])
            prom.stop()
        cluster.close()


def test_dashboard_uses_only_defined_metrics() -> None:
    """Every skein_* series the dashboard queries exists in mesh/base/metrics.py (and the required panels are there)."""
    from prometheus_client import REGISTRY

    import mesh.base.metrics  # noqa: F401 - registers the metrics

    names: set[str] = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    exprs = dashboard_exprs()
    used = {m for _, e in exprs for m in re.findall(r"\bskein_[a-z_]+", e)}
    assert used, "the dashboard queries no skein metric"
    assert not used - names, f"not defined in mesh/base/metrics.py: {sorted(used - names)}"
    text = " ".join(e for _, e in exprs)
    for needed in ("skein_gateway_connections", "skein_gateway_frames_in_total", "skein_gateway_frames_out_total",
                   "skein_gateway_bytes_in_total", "skein_gateway_bytes_out_total", "skein_messages_in_total",
                   "skein_messages_out_total", "skein_send_latency_seconds_bucket",
                   "skein_delivery_latency_seconds_bucket", "skein_replication_lag_entries", "skein_slots_led",
                   "skein_mesh_pub_gaps_total", "skein_etcd_up", "skein_redis_up", "skein_webhook_queue_depth",
                   "skein_webhook_failures_total", "skein_gateway_rejected_total"):
        assert needed in text, f"the dashboard has no panel on {needed}"
    for q in ("0.5", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(skein_send_latency_seconds_bucket" in text
        assert f"histogram_quantile({q}, sum by (le) (rate(skein_delivery_latency_seconds_bucket" in text
