"""`make chaos`: kill -9 and restart a random node every 10-20 s under load, then check.

Starts etcd, Redis and N nodes (random ports, temporary data dirs), runs the steady
1:1 and group workload of ``tests.support.workload`` for ``--duration`` seconds while a
random node is killed with SIGKILL every 10-20 s and restarted a few seconds later,
then stops the load and prints what the checker found on every replica: acknowledged,
lost (must be 0), duplicated (must be 0), gaps, divergent replicas, undelivered, and
the longest time a send took to be acknowledged.

    .venv/bin/python ops/faults/chaos.py --duration 600
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.support.workload import cluster_under_load  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    random.seed(args.seed)
    kills = 0
    with cluster_under_load(args.nodes, {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"},
                            pairs=6, groups=3, group_size=4, rate=args.rate) as (cluster, wl):
        t0 = time.time()
        print(f"chaos: {args.nodes} nodes, {args.rate} msg/s, {args.duration:.0f} s, seed {args.seed}", flush=True)
        while time.time() - t0 < args.duration:
            gevent.sleep(random.uniform(10, 20))
            if time.time() - t0 >= args.duration:
                break
            victim = random.choice(cluster.live_nodes())
            victim.kill9()
            kills += 1
            down = random.uniform(2, 8)
            print(f"[{time.time() - t0:6.1f}s] kill -9 node {victim.node_id}; restart in {down:.1f}s; "
                  f"acked so far {len(wl.acked)}", flush=True)
            gevent.sleep(down)
            victim.start(timeout=60)
        wl.stop()
        for n in cluster.nodes.values():
            if not (n.proc and n.proc.alive()):
                n.start(timeout=60)
        rep = wl.check(settle=120)
        rep["kills"] = kills
        rep["seconds"] = round(time.time() - t0)
        print("chaos result: " + json.dumps(rep), flush=True)
        for sample in getattr(wl, "divergent_samples", [])[:5]:
            print("divergent replica sample:", sample, flush=True)
        ok = rep["lost"] == 0 and rep["duplicated"] == 0 and rep["gaps"] == 0 and rep["divergent"] == 0
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
