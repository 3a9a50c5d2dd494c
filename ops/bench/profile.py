"""``make profile``: where a node spends its time under load (py-spy, no code changes).

Starts a local 3-node cluster (replicaCount 3) on random ports, runs a load-generator
scenario against it (any ``python -m ops.bench.loadgen`` arguments after ``--``) and,
after a warm-up, samples node 1 with py-spy for ``--seconds``: a flame graph
(``test-artifacts/profile/node1.svg``, open it in a browser), the raw collapsed stacks
(``node1.txt``) and a printed summary: functions by own time and by inclusive time,
with idle threadpool workers left out, and the three nodes' CPU per delivery during the
sample (``/proc`` CPU time over the loader's deliveries/s). ``--gil`` samples only the
thread holding the GIL (Python work; leaves out time in system calls).

    .venv/bin/python ops/bench/profile.py [--seconds 10] [--gil] -- --scenario groups --group-rate 500

To profile a node of a running cluster instead:
``py-spy record -p <pid of python -m mesh> -d 10 -r 200 -o profile.svg``
(``py-spy top -p <pid>`` for a live view); root or ``CAP_SYS_PTRACE`` is needed.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ops.bench import BENCH_LIMITS  # noqa: E402
from tests.support.servers import Cluster, http, wait_until  # noqa: E402

IDLE = ("acquire_with_timeout", "Queue.get", "_wait_for_tstate_lock")


def _name(frame: str) -> str:
    if " (" not in frame:
        return frame
    fn, rest = frame.split(" (", 1)
    return f"{fn} ({rest.split(':')[0].split('/')[-1]})"


def summarise(raw: str, top: int = 25) -> str:
    """Own-time and inclusive-time tables from py-spy's collapsed stacks (``--format raw``)."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(marker in f for f in frames[-3:] for marker in IDLE):
            continue
        n = int(count)
        total += n
        own[_name(frames[-1])] += n
        for fn in {_name(f) for f in frames}:
            incl[fn] += n
    out = [f"{total} busy samples", "", "own time:"]
    out += [f"  {c * 100 / max(1, total):5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {c * 100 / max(1, total):5.1f}%  {f}" for f, c in incl.most_common(top + 15)]
    return "\n".join(out)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    argv = sys.argv[1:]
    load = argv[argv.index("--") + 1:] if "--" in argv else ["--scenario", "pairs", "--rate", "1000"]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--gil", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "test-artifacts", "profile"))
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    os.makedirs(args.out, exist_ok=True)
    c = Cluster(3, extra={"tokenAuthOn": False, **BENCH_LIMITS, "logger.level": "WARNING"})
    try:
        c.start()
        wait_until(lambda: all(s["ready"] for s in http("GET", c.nodes[1].api + "/cluster/slots")[1]["slots"]), 60,
                   what="every slot ready")
        duration = args.seconds + 10
        gen = subprocess.Popen([sys.executable, "-m", "ops.bench.loadgen", "--api", c.nodes[1].api,
                                "--duration", str(duration), *load], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        time.sleep(6)
        pid = str(c.nodes[1].proc.pid)
        pids = [n.proc.pid for n in c.nodes.values()]
        cpu0, t0 = cpu_seconds(pids), time.time()
        extra = ["--gil"] if args.gil else []
        raw = os.path.join(args.out, "node1.txt")
        svg = os.path.join(args.out, "node1.svg")
        subprocess.run([spy, "record", "-p", pid, "-d", str(int(args.seconds)), "-r", "200", "-f", "raw", "-o", raw,
                        "--nonblocking", *extra], check=True, capture_output=True)
        cores = (cpu_seconds(pids) - cpu0) / (time.time() - t0)
        subprocess.run([spy, "record", "-p", pid, "-d", "3", "-r", "200", "-o", svg, "--nonblocking", *extra],
                       check=True, capture_output=True)
        out, _ = gen.communicate()
        print(out.splitlines()[0] if out else "")
        print(out.splitlines()[1] if out else "")
        try:
            res = json.loads(out.strip().splitlines()[-1])
            per_s = res["deliveries_per_s"]
            print(f"server CPU (3 nodes, during the sample): {cores:.2f} cores; deliveries/s {per_s:.0f}; "
                  f"{cores / max(1e-9, per_s) * 1e6:.0f} us of server CPU per delivery")
            if res.get("errors"):
                print(f"errors: {res['errors']}")
        except (ValueError, IndexError, KeyError) as exc:
            print(f"(no CPU per delivery: {exc})")
        with open(raw) as fh:
            print(summarise(fh.read()))
        print(f"\nflame graph: {svg}\ncollapsed stacks: {raw}")
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
