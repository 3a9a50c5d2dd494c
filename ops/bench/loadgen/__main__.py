"""`python -m ops.bench.loadgen`: drive a running Skein cluster and print what it sustained.

Scenarios:

* ``idle``: N idle connections spread over the nodes; resident memory per connection;
* ``pairs``: P pairs of users chatting 1:1, each sender at ``--rate`` total msg/s (open
  loop) or as fast as acknowledged (``--window`` messages in flight per sender);
* ``groups``: G groups of M members spread over all nodes, ``--group-senders`` senders
  per group, at ``--rate`` total msg/s or closed loop;
* ``mix``: pairs and groups at once.

Connections are split over ``--workers`` processes (``worker.py``). The report has
acknowledged sends/s, deliveries/s, SENDACK latency p50/p99, end-to-end latency
(send -> each recipient's RECV) p50/p99, errors, and each node's CPU and resident
memory (from ``/varz``), as a table and as JSON (``--json FILE``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

from ops.bench.loadgen.harness import merge, run_workers  # noqa: E402

PY = sys.executable


def http(method: str, url: str, body=None, token: str = "", timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **({"token": token} if token else {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def node_stats(nodes: list[dict], token: str) -> dict[int, dict]:
    out = {}
    for n in nodes:
        v = http("GET", n["api_url"].rstrip("/") + "/varz", token=token)
        out[n["id"]] = {"cpu": v["cpu"], "mem": v["mem"], "t": time.time(), "connections": v["connections"]}
    return out


def plan(args, nodes: list[dict]) -> tuple[list[dict], list[dict], list[tuple[str, list[str]]]]:
    """(connections, senders, groups to create)."""
    tag = args.tag or uuid.uuid4().hex[:6]
    ws = args.transport == "ws"
    addrs = [n["ws_addr"].split("://", 1)[-1].split("/", 1)[0] if ws else n["tcp_addr"] for n in nodes]
    conns, senders, groups = [], [], []

    def conn(uid: str, i: int) -> None:
        host, _, port = addrs[i % len(addrs)].rpartition(":")
        conns.append({"uid": uid, "host": host, "port": int(port), "ws": ws})

    i = 0
    if args.scenario in ("pairs", "mix"):
        per_sender = args.rate / (2 * args.pairs) if args.rate else 0
        for p in range(args.pairs):
            a, b = f"b{tag}p{p}a", f"b{tag}p{p}b"
            conn(a, i)
            conn(b, i + 1)
            i += 2
            senders.append({"uid": a, "to": [[b, 1]], "rate": per_sender})
            senders.append({"uid": b, "to": [[a, 1]], "rate": per_sender})
    if args.scenario in ("groups", "mix"):
        total_senders = args.groups * args.group_senders
        per_sender = args.group_rate / total_senders if args.group_rate else 0
        for g in range(args.groups):
            gid = f"b{tag}g{g}"
            members = [f"b{tag}g{g}m{m}" for m in range(args.members)]
            groups.append((gid, members))
            for m in members:
                conn(m, i)
                i += 1
            for m in members[:args.group_senders]:
                senders.append({"uid": m, "to": [[gid, 2]], "rate": per_sender})
    if args.scenario == "idle":
        for c in range(args.conns):
            conn(f"b{tag}i{c}", c)
    return conns, senders, groups


def main() -> int:
    ap = argparse.ArgumentParser(description="Skein load generator")
    ap.add_argument("--api", required=True, help="HTTP API URL of any node")
    ap.add_argument("--token", default="", help="managerToken, if the cluster has one")
    ap.add_argument("--scenario", choices=["idle", "pairs", "groups", "mix"], default="pairs")
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--rate", type=float, default=0, help="1:1 messages per second in total (0: closed loop)")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--members", type=int, default=20)
    ap.add_argument("--group-senders", type=int, default=1)
    ap.add_argument("--group-rate", type=float, default=0, help="group messages per second in total (0: closed loop)")
    ap.add_argument("--window", type=int, default=4, help="in-flight messages per sender in closed loop")
    ap.add_argument("--conns", type=int, default=1000, help="idle scenario: connections")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--register", action="store_true", help="register tokens (when tokenAuthOn is on)")
    ap.add_argument("--no-encrypt", action="store_true")
    ap.add_argument("--transport", choices=["tcp", "ws"], default="tcp", help="WKProto over TCP or WebSocket")
    ap.add_argument("--payload-bytes", type=int, default=32, help="length of the text content of each message")
    ap.add_argument("--tag", default="")
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    result = run(args)
    print_table([result])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    print(json.dumps(result))
    return 0


def run(args) -> dict:
    api = args.api.rstrip("/")
    nodes = http("GET", api + "/cluster/nodes", token=args.token)["nodes"]
    conns, senders, groups = plan(args, nodes)
    if args.register:
        for c in conns:
            http("POST", api + "/user/token", {"uid": c["uid"], "token": "t", "device_flag": 1}, args.token)
    for gid, members in groups:
        http("POST", api + "/channel", {"channel_id": gid, "channel_type": 2, "subscribers": members}, args.token)
    k = max(1, min(args.workers, len(conns)))
    shares: list[dict] = [{"connections": [], "senders": []} for _ in range(k)]
    owner = {}
    for i, c in enumerate(conns):
        shares[i % k]["connections"].append(c)
        owner[c["uid"]] = i % k
    for s in senders:
        shares[owner[s["uid"]]]["senders"].append(s)
    configs = []
    for share in shares:
        cfg = {**share, "duration": args.duration, "warmup": args.warmup, "window": 0 if (args.rate or
               args.group_rate) else args.window, "encrypt": not args.no_encrypt,
               "payload_bytes": args.payload_bytes}
        if args.scenario == "mix":
            cfg["window"] = 0 if (args.rate and args.group_rate) else args.window
        if args.scenario == "idle":
            cfg["duration"], cfg["warmup"] = 0, 0
        configs.append(cfg)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

    def on_ready() -> tuple[dict, dict | None]:
        first = node_stats(nodes, args.token)
        if args.scenario != "idle":
            return first, None
        time.sleep(3)
        return first, node_stats(nodes, args.token)
    connected, results, (before, idle_after) = run_workers([PY, "-m", "ops.bench.loadgen.worker"], configs, root,
                                                           on_ready)
    if args.scenario == "idle":
        delta = sum(idle_after[n]["mem"] - before[n]["mem"] for n in idle_after)
        return {"scenario": "idle", "label": args.label, "connections": connected,
                "bytes_per_connection": round(delta / max(1, connected)),
                "nodes": {n: {"rss_mb": round(idle_after[n]["mem"] / 2**20, 1)} for n in idle_after}}
    after = node_stats(nodes, args.token)
    m = merge(results)
    seconds, sendack, e2e, errors, acked, delivered = (m["seconds"], m["sendack"], m["e2e"], m["errors"], m["acked"],
                                                       m["delivered"])
    node_usage = {}
    for n, a in after.items():
        b = before[n]
        node_usage[n] = {"cpu_pct": round(100 * (a["cpu"] - b["cpu"]) / max(1e-6, a["t"] - b["t"]), 1),
                         "rss_mb": round(a["mem"] / 2**20, 1)}
    return {
        "scenario": args.scenario, "label": args.label, "connections": connected, "seconds": round(seconds, 1),
        "sends_per_s": round(acked / seconds), "deliveries_per_s": round(delivered / seconds), "delivered": delivered,
        "sendack_p50_ms": round(sendack.percentile(50) * 1000, 2), "sendack_p99_ms": round(sendack.percentile(99) * 1000, 2),
        "e2e_p50_ms": round(e2e.percentile(50) * 1000, 2), "e2e_p99_ms": round(e2e.percentile(99) * 1000, 2),
        "errors": errors, "failed": m["failed"], "nodes": node_usage, "window": m["window"],
        "params": {k: v for k, v in vars(args).items() if k not in ("api", "token", "json")},
    }


def print_table(results: list[dict]) -> None:
    print(f"{'scenario':<10}{'label':<22}{'conns':>7}{'sends/s':>9}{'deliv/s':>9}{'ack p50':>9}{'ack p99':>9}"
          f"{'e2e p50':>9}{'e2e p99':>9}{'errors':>8}  nodes (cpu%, rss MB)")
    for r in results:
        if r["scenario"] == "idle":
            print(f"{'idle':<10}{r['label']:<22}{r['connections']:>7}  {r['bytes_per_connection'] / 1024:.1f} KB/conn")
            continue
        nodes = " ".join(f"{n}:{u['cpu_pct']}%/{u['rss_mb']}" for n, u in sorted(r["nodes"].items()))
        print(f"{r['scenario']:<10}{r['label']:<22}{r['connections']:>7}{r['sends_per_s']:>9}{r['deliveries_per_s']:>9}"
              f"{r['sendack_p50_ms']:>9}{r['sendack_p99_ms']:>9}{r['e2e_p50_ms']:>9}{r['e2e_p99_ms']:>9}"
              f"{sum(r['errors'].values()) + r['failed']:>8}  {nodes}")


if __name__ == "__main__":
    sys.exit(main())
