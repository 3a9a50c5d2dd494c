"""`make chaos`: kill -9, freezes (SIGSTOP/SIGCONT) and graceful restarts (SIGTERM) under load, then check.

Starts etcd, Redis and N nodes (random ports, temporary data dirs), runs the steady
1:1 and group workload of ``tests.support.workload`` for ``--duration`` seconds while,
every 10-20 s, a random node gets one fault, chosen at random:

* ``kill -9`` of its process group, restarted 2-8 s later;
* a freeze: SIGSTOP for 3-12 s (longer than the lease, so its slots fail over), then
  SIGCONT;
* a graceful restart: SIGTERM, then started again once its processes are gone (the
  time that took is printed).

Then it stops the load and prints what the checker found on every replica:
acknowledged, lost (must be 0), duplicated (must be 0), gaps, divergent replicas,
undelivered, and two outage figures side by side:

* ``server_longest_slot_refusal_s``: per slot, the longest time the servers reported it
  unable to take writes (``/cluster/replication`` polled 4 times a second: its leader
  did not answer or was not ready), the worst slot;
* ``client_longest_outage_s``: the longest a client's send took from its first attempt
  to its SENDACK. It is longer than the server figure because a client also waits
  for its own connection: on a frozen node it gets no answer at all until the node
  resumes or its send times out (8 s), and after a kill it must notice, reconnect
  elsewhere and resend.

Then every refusal window of 2 s or more (slot, length, when it began), longest first,
to match against the fault printed just before it and the nodes' logs
(``SKEIN_KEEP_TEST_DIRS=1`` keeps them).

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

from tests.support.faults import SlotOutageMonitor, freeze, resume, sigterm_and_wait  # noqa: E402
from tests.support.workload import cluster_under_load  # noqa: E402

CLIENT_REASON = ("a client also waits for its own connection: on a frozen node it gets no answer until the node "
                 "resumes or its send times out, after a kill it reconnects elsewhere and resends")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--faults", default="kill,freeze,term", help="comma-separated mix of kill, freeze, term")
    args = ap.parse_args()
    random.seed(args.seed)
    kinds = [k for k in args.faults.split(",") if k]
    counts = {k: 0 for k in kinds}
    term_exit: list[float] = []
    paused: set[int] = set()
    with cluster_under_load(args.nodes, {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"},
                            pairs=6, groups=3, group_size=4, rate=args.rate) as (cluster, wl):
        monitor = SlotOutageMonitor(cluster, paused)
        monitor.start()
        t0 = time.time()
        m0 = time.monotonic()
        print(f"chaos: {args.nodes} nodes, {args.rate} msg/s, {args.duration:.0f} s, faults {kinds}, seed {args.seed}",
              flush=True)
        while time.time() - t0 < args.duration:
            gevent.sleep(random.uniform(10, 20))
            if time.time() - t0 >= args.duration:
                break
            victim = random.choice(cluster.live_nodes())
            kind = random.choice(kinds)
            counts[kind] += 1
            stamp = f"[{time.time() - t0:6.1f}s]"
            if kind == "kill":
                victim.kill9()
                down = random.uniform(2, 8)
                print(f"{stamp} kill -9 node {victim.node_id}; restart in {down:.1f}s; acked so far {len(wl.acked)}",
                      flush=True)
                gevent.sleep(down)
                victim.start(timeout=60)
            elif kind == "freeze":
                down = random.uniform(3, 12)
                print(f"{stamp} SIGSTOP node {victim.node_id} for {down:.1f}s; acked so far {len(wl.acked)}",
                      flush=True)
                paused.add(victim.node_id)
                freeze(victim)
                try:
                    gevent.sleep(down)
                finally:
                    resume(victim)
                    paused.discard(victim.node_id)
            else:
                took = sigterm_and_wait(victim, timeout=30)
                term_exit.append(took)
                print(f"{stamp} SIGTERM node {victim.node_id}: processes gone after {took:.1f}s; restarting; "
                      f"acked so far {len(wl.acked)}", flush=True)
                victim.start(timeout=60)
        wl.stop()
        monitor.stop()
        for n in cluster.nodes.values():
            if not (n.proc and n.proc.alive()):
                n.start(timeout=60)
        rep = wl.check(settle=120)
        server_s, server_slot, server_start = monitor.longest()
        rep["faults"] = counts
        rep["sigterm_exit_s_max"] = round(max(term_exit), 1) if term_exit else None
        rep["seconds"] = round(time.time() - t0)
        rep["server_longest_slot_refusal_s"] = round(server_s, 2)
        rep["server_longest_slot"] = server_slot
        rep["server_longest_began_at_s"] = round(server_start - m0, 1) if server_start is not None else None
        rep["server_polls"] = monitor.polls
        rep["client_longest_outage_s"] = rep["longest_refusal_s"]
        print("chaos result: " + json.dumps(rep), flush=True)
        print(f"longest time a slot refused writes (server side, per slot): {server_s:.2f}s (slot {server_slot}); "
              f"client-side longest outage: {rep['longest_refusal_s']:.2f}s ({CLIENT_REASON})", flush=True)
        for secs, slot, began in monitor.windows(min_s=2.0)[:20]:
            print(f"slot {slot} refused writes for {secs:.2f}s from {began - m0:.1f}s", flush=True)
        for sample in getattr(wl, "divergent_samples", [])[:5]:
            print("divergent replica sample:", sample, flush=True)
        ok = rep["lost"] == 0 and rep["duplicated"] == 0 and rep["gaps"] == 0 and rep["divergent"] == 0
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
