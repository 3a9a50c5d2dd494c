"""``make bench``: the load-generator scenarios against a local 3-node cluster and one node.

Starts etcd, Redis and Skein nodes on random ports (the test harness's ``Cluster``),
runs ``python -m ops.bench.loadgen`` scenarios against them, measures idle memory per
connection (``ops/bench/idle_connections.py``), prints every table and rewrites the
``bench`` section of ``docs/BENCHMARKS.md`` with the machine, the commands and the
figures next to their targets.

    .venv/bin/python ops/bench/run.py [--duration 20] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ops.bench import BENCH_LIMITS, machine  # noqa: E402
from ops.bench.report import replace_section  # noqa: E402
from tests.support.servers import Cluster, http, wait_until  # noqa: E402

PY = sys.executable
DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
# group fan-out shape shared with `make bench-compare`
GROUPS, MEMBERS, GROUP_WINDOW = 20, 50, 8


def loadgen(api: str, label: str, *args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [PY, "-m", "ops.bench.loadgen", "--api", api, "--label", label, "--json", out, *args]
    print("$ " + " ".join(["python -m ops.bench.loadgen", "--api", "<node>", *args]), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed: {r.stderr[-2000:]}")
    with open(out) as fh:
        res = json.load(fh)
    os.unlink(out)
    res["command"] = "python -m ops.bench.loadgen " + " ".join(args)
    print(r.stdout.splitlines()[0])
    print(r.stdout.splitlines()[1], flush=True)
    return res


def start(n: int) -> Cluster:
    c = Cluster(n, extra={"tokenAuthOn": False, "logger.level": "WARNING", "conn.maxConnections": 20000, **BENCH_LIMITS})
    c.start()
    wait_until(lambda: all(s["ready"] for s in http("GET", c.nodes[1].api + "/cluster/slots")[1]["slots"]), 60,
               what="every slot ready")
    return c


def scenarios(api: str, nodes: int, duration: float, full: bool) -> list[dict]:
    d = str(duration)
    out = [loadgen(api, f"{nodes}n 1:1 max", "--scenario", "pairs", "--pairs", "50", "--window", "4",
                   "--duration", d)]
    if full:
        out.append(loadgen(api, f"{nodes}n 1:1 @1000/s", "--scenario", "pairs", "--pairs", "50", "--rate", "1000",
                           "--duration", d))
    g = ["--scenario", "groups", "--groups", str(GROUPS), "--members", str(MEMBERS), "--group-senders", "1"]
    top = loadgen(api, f"{nodes}n groups max", *g, "--window", str(GROUP_WINDOW), "--duration", d)
    out.append(top)
    if full:
        half_msgs = max(1, round(top["deliveries_per_s"] / 2 / (MEMBERS - 1)))
        out.append(loadgen(api, f"{nodes}n groups @half", *g, "--group-rate", str(half_msgs), "--duration", d))
        out.append(loadgen(api, f"{nodes}n mix", "--scenario", "mix", "--pairs", "25", "--rate", "500",
                           "--groups", "10", "--members", str(MEMBERS), "--group-senders", "1", "--group-rate", "100",
                           "--duration", d))
    return out


def idle(conns: int) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    print(f"$ python ops/bench/idle_connections.py --conns {conns}", flush=True)
    r = subprocess.run([PY, "ops/bench/idle_connections.py", "--conns", str(conns), "--json", out], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"idle benchmark failed: {r.stderr[-2000:]}")
    print("\n".join(r.stdout.splitlines()[:3]), flush=True)
    with open(out) as fh:
        res = json.load(fh)
    os.unlink(out)
    return res


def table(results: list[dict]) -> str:
    rows = ["| run | conns | sends/s | deliveries/s | SENDACK p50 / p99 ms | delivery p50 / p99 ms | errors | "
            "node CPU % / RSS MB |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        nodes = ", ".join(f"{n}: {u['cpu_pct']} / {u['rss_mb']}" for n, u in sorted(r["nodes"].items()))
        rows.append(f"| {r['label']} | {r['connections']} | {r['sends_per_s']:,} | {r['deliveries_per_s']:,} | "
                    f"{r['sendack_p50_ms']} / {r['sendack_p99_ms']} | {r['e2e_p50_ms']} / {r['e2e_p99_ms']} | "
                    f"{sum(r['errors'].values()) + r['failed']} | {nodes} |")
    return "\n".join(rows)


def verdicts(three: list[dict], idle_res: list[dict]) -> str:
    by = {r["label"]: r for r in three}
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(name: str, measured: str, ok: bool) -> None:
        lines.append(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
    if "3n 1:1 max" in by:
        v = by["3n 1:1 max"]["sends_per_s"]
        add("1:1 ≥ 2,500 acknowledged sends/s", f"{v:,} sends/s", v >= 2500)
    if "3n 1:1 @1000/s" in by:
        r = by["3n 1:1 @1000/s"]
        add("SENDACK p99 < 50 ms at 1,000 sends/s", f"{r['sendack_p99_ms']} ms ({r['sends_per_s']:,} sends/s)",
            r["sendack_p99_ms"] < 50)
    if "3n groups max" in by:
        v = by["3n groups max"]["deliveries_per_s"]
        add("group fan-out ≥ 25,000 deliveries/s", f"{v:,} deliveries/s", v >= 25000)
    if "3n groups @half" in by:
        r = by["3n groups @half"]
        add("delivery p99 < 100 ms at half that rate", f"{r['e2e_p99_ms']} ms ({r['deliveries_per_s']:,} deliveries/s)",
            r["e2e_p99_ms"] < 100)
    for r in idle_res:
        limit = 12 if r["transport"] == "tcp" else 25
        add(f"idle memory ≤ {limit} KB per {r['transport'].upper()} connection",
            f"{r['kb_per_connection']} KB ({r['connections']:,} connections)", r["kb_per_connection"] <= limit)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="Skein benchmarks (writes docs/BENCHMARKS.md)")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--quick", action="store_true", help="short runs, no doc update (a smoke test)")
    args = ap.parse_args()
    m = machine.describe()
    print("machine:", machine.markdown(m), flush=True)
    started = time.time()
    c = start(3)
    try:
        three = scenarios(c.nodes[1].api, 3, args.duration, full=True)
    finally:
        c.close()
    c = start(1)
    try:
        one = scenarios(c.nodes[1].api, 1, args.duration, full=False)
    finally:
        c.close()
    idle_res = idle(args.idle_conns if not args.quick else 1000)
    took = time.time() - started
    body = "\n".join([
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench` ({took / 60:.1f} min) on "
        f"{machine.markdown(m)}. Load generator, servers, etcd and Redis share the machine.",
        "",
        "### Targets (3 nodes, replicaCount 3)",
        "",
        verdicts(three, idle_res),
        "",
        "### 3 nodes, replicaCount 3 (every message on 3 nodes' disks before its SENDACK)",
        "",
        table(three),
        "",
        "### 1 node",
        "",
        table(one),
        "",
        "### Idle connections (one node, encrypted v5 sessions)",
        "",
        "| transport | connections | KB per connection | RSS before / after MB |",
        "|---|---:|---:|---:|",
        *[f"| {r['transport'].upper()} | {r['connections']:,} | {r['kb_per_connection']} | "
          f"{r['rss_before_mb']} / {r['rss_after_mb']} |" for r in idle_res],
        "",
        "Commands, in this order against one 3-node cluster, then against one fresh single node (`<node>` is node 1's API URL):",
        "",
        "```",
        *[r["command"] for r in three + one],
        f"python ops/bench/idle_connections.py --conns {args.idle_conns}",
        "```",
    ])
    print()
    print(body)
    if not args.quick:
        replace_section(DOC, "bench", body)
        print(f"\nwrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
