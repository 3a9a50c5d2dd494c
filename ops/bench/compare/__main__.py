"""``make bench-compare``: Skein's group fan-out next to python-socketio's, pinned, in one run.

One workload for every system: ``--groups`` groups of ``--members`` members over
WebSocket, spread round-robin over 3 server processes, one sender per group, 64-byte
payloads. The servers (and etcd and Redis) run on CPU ``--server-cpu``, the load
processes on CPU ``--load-cpu`` (the affinity is set before each process starts and
printed from /proc). Per system:

1. **fixed rate**: ``--fixed-rate`` group messages/s for ``--duration`` s; server CPU
   (every server process, etcd and Redis included, from /proc over the measured window)
   and context switches divided by the deliveries counted in the same window;
2. **maximum rate**: open-loop steps doubling from ``--fixed-rate`` (the step above is the
   first) until one is not sustained, then ``--bisect`` halvings between the last sustained and the first not;
   sustained = at least 95% of the offered deliveries arrive and delivery p99 <= ``--p99-limit`` ms.

Systems (``--only``, default ``skein,python-socketio``):

* **skein**: a 3-node cluster, replicaCount 3 (every message persisted on 3 nodes
  before it is acknowledged and delivered), driven by ``ops.bench.loadgen`` over WebSocket;
* **python-socketio**: 3 processes (gevent) sharing one Redis through ``RedisManager``;
* **node-socketio**: 3 processes sharing one Redis through ``@socket.io/redis-adapter``;
* **bare-ws**: 3 processes pushing pre-encoded WebSocket frames (ZeroMQ between
  them); no protocol, no storage: the machine's ceiling for this shape.

The peers are installed from the package registries into ``.bench/`` on first use.
Prints every step and a summary, and rewrites the ``compare`` section of
``docs/BENCHMARKS.md`` (not with ``--quick`` or ``--no-pin``).

    .venv/bin/python -m ops.bench.compare [--only skein,python-socketio] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, ROOT)

from ops.bench import BENCH_LIMITS, machine  # noqa: E402
from ops.bench.loadgen.harness import merge, run_workers  # noqa: E402
from ops.bench.procstat import Sampler, allowed_cpus  # noqa: E402
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
CONTENT = 38  # characters of text content: {"type": 1, "content": "..."} is then 64 bytes


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


def drive_ws(proto: str, hosts: list[tuple[str, int]], args, rate: float, duration: float) -> dict:
    conns, senders = plan(args.groups, args.members, hosts)
    for snd in senders:
        snd["rate"] = rate / len(senders)
    k = args.workers
    shares = [{"connections": conns[i::k], "senders": [], "proto": proto, "duration": duration,
               "warmup": args.warmup, "window": 0} for i in range(k)]
    owner = {c["uid"]: i % k for i, c in enumerate(conns)}
    for s in senders:
        shares[owner[s["uid"]]]["senders"].append(s)
    connected, results, _ = run_workers([PY, os.path.join(HERE, "ws_worker.py")], shares, ROOT)
    m = merge(results)
    return {"connections": connected, "sends_per_s": round(m["acked"] / m["seconds"]),
            "deliveries_per_s": round(m["delivered"] / m["seconds"]),
            "e2e_p50_ms": round(m["e2e"].percentile(50) * 1000, 2), "e2e_p99_ms": round(m["e2e"].percentile(99) * 1000, 2),
            "errors": sum(m["errors"].values()) + m["failed"], "window": m["window"], "delivered": m["delivered"]}


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


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Processes started inside inherit CPU ``cpu`` (None: no pinning)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class Servers:
    """The running server side of one system: {name: pid} to sample, a load driver, a stop."""

    def __init__(self, pids: dict[str, int], drive: Callable[[float, float], dict], stop: Callable[[], None],
                 nodes: list[str]) -> None:
        self.pids, self.drive, self.stop, self.nodes = pids, drive, stop, nodes


def start_peer(system: str, args, base: str) -> Servers:
    redis = RedisServer(base)
    if system != "bare-ws":
        redis.start()
    ports = [free_port() for _ in range(3)]
    procs = []

    def stop() -> None:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        redis.stop()
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
    except BaseException:
        stop()
        raise
    time.sleep(1)
    pids = {f"server{i + 1}": p.pid for i, p in enumerate(procs)}
    if redis.proc is not None:
        pids["redis"] = redis.proc.pid
    proto = "bare" if system == "bare-ws" else "socketio"
    hosts = [("127.0.0.1", p) for p in ports]
    return Servers(pids, lambda rate, duration: drive_ws(proto, hosts, args, rate, duration), stop,
                   [k for k in pids if k.startswith("server")])


def start_skein(args) -> Servers:
    c = Cluster(3, extra={"tokenAuthOn": False, "logger.level": "WARNING", "conn.maxConnections": 20000,
                          "cluster.replicaCount": 3, **BENCH_LIMITS, **args.skein_config})
    try:
        c.start()
        wait_until(lambda: all(s["ready"] for s in http("GET", c.nodes[1].api + "/cluster/slots")[1]["slots"]), 60,
                   what="every slot ready")
    except BaseException:
        c.close()
        raise

    def drive(rate: float, duration: float) -> dict:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            out = fh.name
        r = subprocess.run([PY, "-m", "ops.bench.loadgen", "--api", c.nodes[1].api, "--scenario", "groups",
                            "--transport", "ws", "--payload-bytes", str(CONTENT),
                            "--groups", str(args.groups), "--members", str(args.members), "--group-senders", "1",
                            "--group-rate", str(rate), "--duration", str(duration), "--warmup",
                            str(args.warmup), "--workers", str(args.workers), "--json", out], cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        with open(out) as fh:
            res = json.load(fh)
        os.unlink(out)
        return {"connections": res["connections"], "deliveries_per_s": res["deliveries_per_s"],
                "e2e_p50_ms": res["e2e_p50_ms"], "e2e_p99_ms": res["e2e_p99_ms"],
                "errors": sum(res["errors"].values()) + res["failed"], "window": res["window"],
                "delivered": res["delivered"]}
    pids = {f"node{i}": n.proc.pid for i, n in c.nodes.items()}
    pids["etcd"] = c.etcd.proc.pid
    pids["redis"] = c.redis.proc.pid
    return Servers(pids, drive, c.close, [f"node{i}" for i in c.nodes])


def cost(sampler: Sampler, r: dict, nodes: list[str]) -> dict:
    """Server CPU and context switches over the step's measured window, per delivery."""
    t0, t1 = r["window"]
    spent = sampler.between(t0, t1)
    delivered = max(1, r["delivered"])
    cpu_all = sum(c for c, _ in spent.values())
    cpu_nodes = sum(spent[n][0] for n in nodes)
    switches = sum(s for _, s in spent.values())
    return {"cpu_us_per_delivery": round(cpu_all / delivered * 1e6, 1),
            "node_cpu_us_per_delivery": round(cpu_nodes / delivered * 1e6, 1),
            "switches_per_delivery": round(switches / delivered, 2), "server_cores": round(cpu_all / (t1 - t0), 2),
            "per_process_cpu_s": {n: round(c, 2) for n, (c, _) in spent.items()}}


def step(system: str, servers: Servers, sampler: Sampler, args, rate: float, duration: float) -> dict:
    r = servers.drive(rate, duration)
    offered = rate * (args.members - 1)
    r.update(system=system, rate=rate, offered=round(offered),
             sustained=r["deliveries_per_s"] >= 0.95 * offered and r["e2e_p99_ms"] <= args.p99_limit,
             **cost(sampler, r, servers.nodes))
    print(f"  {system:<16} {rate:>7g} msg/s offered {offered:>8,.0f}/s: {r['deliveries_per_s']:>8,} deliveries/s "
          f"p50 {r['e2e_p50_ms']:>8} ms p99 {r['e2e_p99_ms']:>8} ms errors {r['errors']} | server CPU "
          f"{r['cpu_us_per_delivery']} us/delivery ({r['server_cores']} cores), "
          f"{r['switches_per_delivery']} switches/delivery{'' if r['sustained'] else '  (not sustained)'}",
          flush=True)
    return r


def search(system: str, servers: Servers, sampler: Sampler, args, first: dict) -> list[dict]:
    """From the fixed-rate step ``first``: doubling steps until one is not sustained, then bisection."""
    runs = []
    ok, bad = (first["rate"], None) if first["sustained"] else (None, first["rate"])
    rate = first["rate"] * 2
    while ok is not None and bad is None and rate <= args.max_rate:
        r = step(system, servers, sampler, args, rate, args.search_duration)
        runs.append(r)
        if r["sustained"]:
            ok, rate = rate, rate * 2
        else:
            bad = rate
    for _ in range(args.bisect if bad is not None and ok is not None else 0):
        rate = round((ok + bad) / 2)
        r = step(system, servers, sampler, args, rate, args.search_duration)
        runs.append(r)
        if r["sustained"]:
            ok = rate
        else:
            bad = rate
    return runs


def run_system(system: str, args, base: str) -> dict:
    with pinned(args.server_cpu):
        servers = start_skein(args) if system == "skein" else start_peer(system, args, base)
    try:
        print("  affinity: " + ", ".join(f"{n} cpu {allowed_cpus(p)}" for n, p in servers.pids.items()) +
              f"; load processes cpu {','.join(map(str, sorted(os.sched_getaffinity(0))))}", flush=True)
        sampler = Sampler(servers.pids).start()
        try:
            fixed = step(system, servers, sampler, args, args.fixed_rate, args.duration)
            runs = search(system, servers, sampler, args, fixed)
        finally:
            sampler.stop()
    finally:
        servers.stop()
    every = [fixed, *runs]
    ok = [r for r in every if r["sustained"]]
    return {"fixed": fixed, "runs": runs, "best": max(ok, key=lambda r: r["deliveries_per_s"]) if ok else None,
            "capped": all(r["sustained"] for r in every)}


def report(results: dict[str, dict], args, m: dict) -> str:
    skein = results.get("skein", {}).get("best")
    lines = [f"| system | persisted | server CPU per delivery at {args.fixed_rate:g} msg/s (node processes only) | "
             "context switches per delivery | highest deliveries/s at p99 ≤ "
             f"{args.p99_limit:g} ms | at msg/s | p50 / p99 ms | Skein ÷ system |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for system, res in results.items():
        f, b = res["fixed"], res["best"]
        persisted = "3 replicas" if system == "skein" else "no"
        head = (f"| {system} | {persisted} | {f['cpu_us_per_delivery']:g} µs ({f['node_cpu_us_per_delivery']:g} µs) | "
                f"{f['switches_per_delivery']:g} |")
        if b is None:
            lines.append(head + " none sustained | - | - | - |")
            continue
        ratio = f"{skein['deliveries_per_s'] / b['deliveries_per_s']:.2f}×" if skein else "-"
        lines.append(head + f" {'≥ ' if res['capped'] else ''}{b['deliveries_per_s']:,} | {b['rate']:g} | "
                            f"{b['e2e_p50_ms']} / {b['e2e_p99_ms']} | {ratio} |")
    step_lines = ["| system | msg/s | offered deliveries/s | deliveries/s | p50 / p99 ms | errors | server cores | "
                  "µs CPU/delivery | sustained |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for system, res in results.items():
        for r in [res["fixed"], *res["runs"]]:
            step_lines.append(f"| {system} | {r['rate']:g} | {r['offered']:,} | {r['deliveries_per_s']:,} | "
                              f"{r['e2e_p50_ms']} / {r['e2e_p99_ms']} | {r['errors']} | {r['server_cores']} | "
                              f"{r['cpu_us_per_delivery']:g} | {'yes' if r['sustained'] else 'no'} |")
    pin = (f"servers, etcd and Redis pinned to CPU {args.server_cpu}, load processes to CPU {args.load_cpu}"
           if args.server_cpu is not None else "not pinned")
    return "\n".join([
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench-compare` on "
        f"{machine.markdown(m)}; {pin}. Shape: {args.groups} groups × {args.members} members "
        f"({args.groups * args.members:,} WebSocket connections) over 3 server processes, one sender per group, "
        f"64-byte payloads, open loop; the fixed-rate step {args.duration:g} s and each search step "
        f"{args.search_duration:g} s measured after {args.warmup:g} s warm-up, {args.workers} load processes. "
        f"Server CPU: every server process, etcd and Redis included, from /proc over the measured window. "
        f"Sustained: ≥ 95% of offered deliveries and p99 ≤ {args.p99_limit:g} ms. Peers: {PY_PEERS[0]}"
        f"{', ' + ', '.join(NODE_PEERS[:2]) if 'node-socketio' in results else ''}.",
        "",
        *lines,
        "",
        "≥: every step up to `--max-rate` was sustained, so the ceiling lies above it.",
        "",
        "Every step:",
        "",
        *step_lines,
        "",
        "Command: `make bench-compare` (`python -m ops.bench.compare`).",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description="group fan-out, pinned: Skein vs python-socketio (and others)")
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--fixed-rate", type=float, default=125, help="group messages/s of the CPU-per-delivery step")
    ap.add_argument("--max-rate", type=float, default=4000, help="the search stops doubling here")
    ap.add_argument("--bisect", type=int, default=2, help="halvings after the first step not sustained")
    ap.add_argument("--p99-limit", type=float, default=200, help="ms; a step with a higher p99 is not sustained")
    ap.add_argument("--duration", type=float, default=20, help="seconds measured at the fixed rate")
    ap.add_argument("--search-duration", type=float, default=10, help="seconds measured per search step")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--no-pin", action="store_true", help="leave every process on every CPU")
    ap.add_argument("--only", default="skein,python-socketio", help=f"comma-separated, of {','.join(SYSTEMS)}")
    ap.add_argument("--quick", action="store_true", help="short steps, no doc update")
    ap.add_argument("--skein-config", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key for every Skein node (repeatable), e.g. store.flushInterval=1s")
    args = ap.parse_args()
    args.skein_config = dict(kv.split("=", 1) for kv in args.skein_config)
    if args.no_pin:
        args.server_cpu = args.load_cpu = None
    if args.quick:
        args.duration, args.search_duration, args.warmup, args.bisect = 5, 4, 1, 0
    only = [s for s in SYSTEMS if s in args.only.split(",")]
    if any(s in only for s in ("python-socketio", "node-socketio")):
        install()
    m = machine.describe()
    print("machine:", machine.markdown(m), flush=True)
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})  # this process and every load process it starts
    results: dict[str, dict] = {}
    base = tempfile.mkdtemp(prefix="skein-compare-")
    for system in only:
        print(f"running {system} ...", flush=True)
        results[system] = run_system(system, args, base)
    body = report(results, args, m)
    print()
    print(body)
    if (not args.quick and not args.skein_config and args.server_cpu is not None
            and {"skein", "python-socketio"} <= set(results)):
        replace_section(os.path.join(ROOT, "docs", "BENCHMARKS.md"), "compare", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
