"""Run the replication simulation over many seeds: ``python -m tests.sim --seeds 2000``.

Prints seeds run, faults injected and violations; for a failing seed, its violations
and the trace that replays it (``--seed S --trace`` prints the trace of one seed).
"""
from __future__ import annotations

import argparse
import sys
import time

from tests.sim.cluster import run


def run_many(first: int, count: int, *, stop_after: int = 3, out=sys.stdout, progress: int = 0) -> tuple[int, int, list]:
    """Run seeds first..first+count-1; returns (seeds run, faults injected, failing results)."""
    faults = 0
    failing = []
    for seed in range(first, first + count):
        if progress and seed > first and (seed - first) % progress == 0:
            print(f"... {seed - first} seeds, {faults} faults, {len(failing)} failing", file=out, flush=True)
        res = run(seed)
        faults += res.faults
        if res.violations:
            failing.append(res)
            print(f"seed {seed}: {len(res.violations)} violation(s): {res.violations[0]}", file=out)
            if len(failing) >= stop_after:
                return seed - first + 1, faults, failing
    return count, faults, failing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=2000)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--seed", type=int, help="run one seed")
    ap.add_argument("--trace", action="store_true", help="print the seed's trace")
    a = ap.parse_args()
    if a.seed is not None:
        res = run(a.seed, trace=True)
        if a.trace or res.violations:
            print("\n".join(res.trace))
        print(f"seed {a.seed}: {res.events} events, {res.faults} faults, {res.acked} acknowledged, "
              f"{len(res.violations)} violation(s)")
        for v in res.violations:
            print("  ", v)
        return 1 if res.violations else 0
    t0 = time.monotonic()
    n, faults, failing = run_many(a.first, a.seeds, stop_after=10**9, progress=5000)
    dt = time.monotonic() - t0
    violations = sum(len(r.violations) for r in failing)
    print(f"seeds run: {n}, faults injected: {faults}, violations: {violations} "
          f"(failing seeds: {[r.seed for r in failing][:20]}), {dt:.1f}s")
    if failing:
        r = failing[0]
        print(f"replay the first failing seed: python -m tests.sim --seed {r.seed} --trace")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
