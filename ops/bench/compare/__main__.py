"""``make bench-compare``: Skein's group fan-out next to Socket.IO's and the machine's ceiling.

One workload shape for every system: ``--groups`` groups of ``--members`` members,
connections spread round-robin over 3 server processes, one sender per group, and
the same offered send rates, stepped up (``--rates``, group messages per second in
total, open loop): each step runs ``--duration`` seconds after a warm-up and records
deliveries/s and the delivery latency (send to each member's receipt). A system
*sustains* a step when at least 95% of the offered deliveries arrive within the step
and delivery p99 stays under ``--p99-limit`` ms; its figure is the highest sustained
step. Systems:

* **skein**: a 3-node cluster, replicaCount 3 (every message persisted on 3 nodes
  before it is acknowledged and delivered), driven by ``ops.bench.loadgen``;
* **python-socketio**: 3 processes (gevent) sharing one Redis through ``RedisManager``;
* **node socket.io**: 3 processes sharing one Redis through ``@socket.io/redis-adapter``;
* **bare gevent ws**: 3 processes pushing pre-encoded WebSocket frames (ZeroMQ between
  them); no protocol, no storage: the machine's ceiling for this shape.

The peers are installed from the package registries into ``.bench/`` (a virtualenv for
python-socketio, an npm prefix for socket.io) on first use; only their minimal server
scripts live here. Prints every step, then per system the highest sustained
deliveries/s with its p99 and the ratio of Skein's to each, and rewrites the
``compare`` section of ``docs/BENCHMARKS.md``.

    .venv/bin/python -m ops.bench.compare [--only skein,python-socketio] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, ROOT)

from ops.bench import BENCH_LIMITS, machine  # noqa: E402
from ops.bench.loadgen.harness import merge, run_workers  # noqa: E402
from ops.bench.report import replace_section  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.servers import Cluster, RedisServer, http, wait_until  # noqa: E402

PY = sys.executable
BENCH = os.path.join(ROOT, ".bench")
PYVENV = os.path.join(BENCH, "pyvenv")
NODE_PREFIX = os.path.join(BENCH, "node")
PY_PEERS = ["python-socketio==5.18.1", "python-engineio==4.15.1", "gevent==26.9.0", "gevent-websocket==0.10.1",
            "redis==8.1.0"]
NODE_PEERS = ["socket.io@4.8.4", "@socket.io/redis-adapter@8.3.0", "redis@5.9.0"]
SYSTEMS = ["skein", "python-socketio", "node-socketio", "bare-ws"]


def install() -> None:
    marker = os.path.join(PYVENV, ".installed-" + "-".join(PY_PEERS).replace("/", "_"))
    if not os.path.exists(marker):
        print("installing python-socketio into .bench/pyvenv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", PYVENV], check=True)
        subprocess.run([os.path.join(PYVENV, "bin", "pip"), "install", "-q", *PY_PEERS], check=True)
        open(marker, "w").close()
    marker = os.path.join(NODE_PREFIX, ".installed-" + "-".join(NODE_PEERS).replace("/", "_"))
    if not os.path.exists(marker):
        print("installing socket.io into .bench/node", flush=True)
        os.makedirs(NODE_PREFIX, exist_ok=True)
        with open(os.path.join(NODE_PREFIX, "package.json"), "w") as fh:
            json.dump({"private": True, "name": "skein-bench-peers"}, fh)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *NODE_PEERS],
                       cwd=NODE_PREFIX, check=True)
        open(marker, "w").close()


def plan(groups: int, members: int, hosts: list[tuple[str, int]]) -> tuple[list[dict], list[dict]]:
    conns, senders = [], []
    i = 0
    for g in range(groups):
        room = f"g{g}"
        for m in range(members):
            host, port = hosts[i % len(hosts)]
            i += 1
            conns.append({"uid": f"g{g}m{m}", "host": host, "port": port, "rooms": [room]})
        senders.append({"uid": f"g{g}m0", "room": room})
    return conns, senders


def drive_ws(proto: str, hosts: list[tuple[str, int]], args, rate: float) -> dict:
    conns, senders = plan(args.groups, args.members, hosts)
    for snd in senders:
        snd["rate"] = rate / len(senders)
    k = args.workers
    shares = [{"connections": conns[i::k], "senders": [], "proto": proto, "duration": args.duration,
               "warmup": args.warmup, "window": 0} for i in range(k)]
    owner = {c["uid"]: i % k for i, c in enumerate(conns)}
    for s in senders:
        shares[owner[s["uid"]]]["senders"].append(s)
    connected, results, _ = run_workers([PY, os.path.join(HERE, "ws_worker.py")], shares, ROOT)
    m = merge(results)
    return {"connections": connected, "sends_per_s": round(m["acked"] / m["seconds"]),
            "deliveries_per_s": round(m["delivered"] / m["seconds"]),
            "e2e_p50_ms": round(m["e2e"].percentile(50) * 1000, 2), "e2e_p99_ms": round(m["e2e"].percentile(99) * 1000, 2),
            "errors": sum(m["errors"].values()) + m["failed"]}


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    import socket

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_until(up, 30, what=what)


def run_peer(system: str, args, base: str) -> list[dict]:
    redis = RedisServer(base)
    if system != "bare-ws":
        redis.start()
    ports = [free_port() for _ in range(3)]
    procs = []
    try:
        if system == "bare-ws":
            pubs = [free_port() for _ in range(3)]
            for i, port in enumerate(ports):
                peers = [str(p) for j, p in enumerate(pubs) if j != i]
                procs.append(subprocess.Popen([PY, os.path.join(HERE, "bare_server.py"), str(port), str(pubs[i]),
                                               *peers], cwd=ROOT))
        elif system == "python-socketio":
            for port in ports:
                procs.append(subprocess.Popen([os.path.join(PYVENV, "bin", "python"),
                                               os.path.join(HERE, "socketio_server.py"), str(port), redis.url]))
        else:
            env = {**os.environ, "NODE_PATH": os.path.join(NODE_PREFIX, "node_modules")}
            for port in ports:
                procs.append(subprocess.Popen(["node", os.path.join(HERE, "socketio_server.js"), str(port), redis.url],
                                              env=env))
        for port, p in zip(ports, procs):
            wait_port(port, p, f"{system} on {port}")
        time.sleep(1)
        proto = "bare" if system == "bare-ws" else "socketio"
        return steps(system, args, lambda rate: drive_ws(proto, [("127.0.0.1", p) for p in ports], args, rate))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        redis.stop()


def run_skein(args) -> list[dict]:
    c = Cluster(3, extra={"tokenAuthOn": False, "logger.level": "WARNING", "conn.maxConnections": 20000,
                          **BENCH_LIMITS})
    try:
        c.start()
        wait_until(lambda: all(s["ready"] for s in http("GET", c.nodes[1].api + "/cluster/slots")[1]["slots"]), 60,
                   what="every slot ready")

        def one(rate: float) -> dict:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                out = fh.name
            r = subprocess.run([PY, "-m", "ops.bench.loadgen", "--api", c.nodes[1].api, "--scenario", "groups",
                                "--groups", str(args.groups), "--members", str(args.members), "--group-senders", "1",
                                "--group-rate", str(rate), "--duration", str(args.duration), "--warmup",
                                str(args.warmup), "--workers", str(args.workers), "--json", out], cwd=ROOT,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            with open(out) as fh:
                res = json.load(fh)
            os.unlink(out)
            return {"connections": res["connections"], "sends_per_s": res["sends_per_s"],
                    "deliveries_per_s": res["deliveries_per_s"], "e2e_p50_ms": res["e2e_p50_ms"],
                    "e2e_p99_ms": res["e2e_p99_ms"], "errors": sum(res["errors"].values()) + res["failed"]}
        return steps("skein", args, one)
    finally:
        c.close()


def steps(system: str, args, run_one) -> list[dict]:
    """Run the rate steps in order until one is not sustained (that one is kept)."""
    out = []
    for rate in args.rate_steps:
        r = run_one(rate)
        offered = rate * (args.members - 1)
        r.update(system=system, rate=rate, offered=round(offered),
                 sustained=r["deliveries_per_s"] >= 0.95 * offered and r["e2e_p99_ms"] <= args.p99_limit)
        print(f"  {system:<16} {rate:>6g} msg/s offered {offered:>8,.0f}/s: {r['deliveries_per_s']:>8,} deliveries/s "
              f"p50 {r['e2e_p50_ms']:>8} ms p99 {r['e2e_p99_ms']:>8} ms errors {r['errors']}"
              f"{'' if r['sustained'] else '  (not sustained)'}", flush=True)
        out.append(r)
        if not r["sustained"]:
            break
    return out


def best(runs: list[dict]) -> dict | None:
    ok = [r for r in runs if r["sustained"]]
    return max(ok, key=lambda r: r["deliveries_per_s"]) if ok else None


def main() -> int:
    ap = argparse.ArgumentParser(description="group fan-out: Skein vs Socket.IO vs a bare WebSocket server")
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--rates", default="250,500,750,1000,1250,1500,2000,2500,3000",
                    help="group messages per second in total, one step each")
    ap.add_argument("--p99-limit", type=float, default=200, help="ms; a step with a higher p99 is not sustained")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=",".join(SYSTEMS))
    ap.add_argument("--quick", action="store_true", help="short runs, no doc update")
    args = ap.parse_args()
    args.rate_steps = [float(x) for x in args.rates.split(",")]
    if args.quick:
        args.duration, args.warmup, args.rate_steps = 5, 1, args.rate_steps[:2]
    only = args.only.split(",")
    if any(s in only for s in ("python-socketio", "node-socketio")):
        install()
    m = machine.describe()
    print("machine:", machine.markdown(m), flush=True)
    results: dict[str, list[dict]] = {}
    base = tempfile.mkdtemp(prefix="skein-compare-")
    for system in SYSTEMS:
        if system not in only:
            continue
        print(f"running {system} ...", flush=True)
        results[system] = run_skein(args) if system == "skein" else run_peer(system, args, base)
    top = {system: best(runs) for system, runs in results.items()}
    skein = top.get("skein")
    lines = ["| system | persisted | highest sustained deliveries/s | at msg/s | delivery p50 / p99 ms | "
             "Skein ÷ system |", "|---|---|---:|---:|---:|---:|"]
    for system, b in top.items():
        if b is None:
            lines.append(f"| {system} | {'3 replicas' if system == 'skein' else 'no'} | none sustained | - | - | - |")
            continue
        ratio = f"{skein['deliveries_per_s'] / b['deliveries_per_s']:.2f}×" if skein else "-"
        # every step sustained: the ceiling lies above the highest offered rate
        at_least = "≥ " if all(r["sustained"] for r in results[system]) else ""
        lines.append(f"| {system} | {'3 replicas' if system == 'skein' else 'no'} | {at_least}{b['deliveries_per_s']:,} | "
                     f"{b['rate']:g} | {b['e2e_p50_ms']} / {b['e2e_p99_ms']} | {ratio} |")
    step_lines = ["| system | msg/s | offered deliveries/s | deliveries/s | p50 / p99 ms | errors | sustained |",
                  "|---|---:|---:|---:|---:|---:|---|"]
    for system, runs in results.items():
        for r in runs:
            step_lines.append(f"| {system} | {r['rate']:g} | {r['offered']:,} | {r['deliveries_per_s']:,} | "
                              f"{r['e2e_p50_ms']} / {r['e2e_p99_ms']} | {r['errors']} | "
                              f"{'yes' if r['sustained'] else 'no'} |")
    body = "\n".join([
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench-compare` on "
        f"{machine.markdown(m)}. Shape: {args.groups} groups × {args.members} members ({args.groups * args.members:,} "
        f"connections) over 3 server processes, one sender per group, open loop at the same offered rates for "
        f"every system, {args.duration:g} s measured per step after {args.warmup:g} s warm-up, {args.workers} load "
        f"processes. Sustained: ≥ 95% of offered deliveries and p99 ≤ {args.p99_limit:g} ms. "
        f"Peers: {', '.join(PY_PEERS[:1] + NODE_PEERS[:2])}.",
        "",
        *lines,
        "",
        "≥: every offered step was sustained, so the system's ceiling lies above it.",
        "",
        "Every step:",
        "",
        *step_lines,
        "",
        "Command: `make bench-compare` (`python -m ops.bench.compare`).",
    ])
    print()
    print(body)
    if not args.quick and len(results) == len(SYSTEMS):
        replace_section(os.path.join(ROOT, "docs", "BENCHMARKS.md"), "compare", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
