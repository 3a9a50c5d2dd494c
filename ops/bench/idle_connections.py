"""Idle connections per node: resident memory per authenticated, encrypted connection.

Starts etcd, Redis and one Skein node (python -m mesh) on random ports, opens N
connections over TCP with Skein's own v5 client (X25519 + AES session each), waits
until they are idle, and reads the node's resident memory (VmRSS) before and after;
then does the same over WebSocket against a fresh node. Prints a table and JSON.

    .venv/bin/python ops/bench/idle_connections.py --conns 10000
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.client import WKClient  # noqa: E402
from ops.bench import BENCH_LIMITS  # noqa: E402
from tests.support.servers import Cluster, wait_until  # noqa: E402


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(transport: str, conns: int, concurrency: int) -> dict:
    c = Cluster(1, extra={"tokenAuthOn": False, "conn.maxConnections": conns + 1000, "logger.level": "WARNING",
                          **BENCH_LIMITS,
                          "conn.idleTimeout": "1h"})
    try:
        c.start()
        node = c.nodes[1]
        pid = node.proc.pid
        addr = f"127.0.0.1:{node.ports['tcp']}" if transport == "tcp" else f"ws://127.0.0.1:{node.ports['ws']}/"
        # warm up: a few connections so lazily-created structures exist before the baseline
        warm = [WKClient(addr, f"warm{i}") for i in range(20)]
        for w in warm:
            w.connect()
        gevent.sleep(2)
        before = rss_kb(pid)
        clients: list[WKClient] = []
        failed = 0
        t0 = time.time()

        def one(i: int) -> None:
            nonlocal failed
            cl = WKClient(addr, f"idle{i}", device_id=f"dev{i}", timeout=30)
            try:
                cl.connect()
                clients.append(cl)
            except Exception:
                failed += 1

        pool = gevent.pool.Pool(concurrency)
        for i in range(conns):
            pool.spawn(one, i)
        pool.join()
        opened = time.time() - t0
        wait_until(lambda: True, 1)
        gevent.sleep(5)  # idle: let the node settle
        after = rss_kb(pid)
        ok = len(clients)
        per_conn = (after - before) * 1024 / ok if ok else 0
        for cl in clients + warm:
            cl.close()
        return {"transport": transport, "connections": ok, "failed": failed, "open_seconds": round(opened, 1),
                "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
                "bytes_per_connection": round(per_conn), "kb_per_connection": round(per_conn / 1024, 2)}
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--transports", default="tcp,ws")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.conns + 500
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    results = [measure(t, args.conns, args.concurrency) for t in args.transports.split(",")]
    targets = {"tcp": 12.0, "ws": 25.0}
    print(f"{'transport':<10}{'conns':>8}{'failed':>8}{'open s':>8}{'RSS before MB':>15}{'RSS after MB':>14}"
          f"{'KB/conn':>9}{'target KB':>11}")
    for r in results:
        print(f"{r['transport']:<10}{r['connections']:>8}{r['failed']:>8}{r['open_seconds']:>8}"
              f"{r['rss_before_mb']:>15}{r['rss_after_mb']:>14}{r['kb_per_connection']:>9}"
              f"{targets.get(r['transport'], 0):>11}")
    print(json.dumps(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
