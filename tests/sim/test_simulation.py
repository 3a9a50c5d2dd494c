"""2,000 seeded fault schedules of the replication simulation (tests/sim/cluster.py): no violation.

More seeds: ``make simulate SEEDS=50000``; replay one: ``python -m tests.sim --seed S --trace``.
"""
from __future__ import annotations

import os
import time

from tests.sim.__main__ import run_many
from tests.sim.cluster import run

SEEDS = int(os.environ.get("SIM_SEEDS", "2000"))


def test_simulation_finds_no_violation_in_2000_seeds(capsys):
    t0 = time.monotonic()
    n, faults, failing = run_many(0, SEEDS, stop_after=1)
    dt = time.monotonic() - t0
    violations = sum(len(r.violations) for r in failing)
    with capsys.disabled():
        print(f"\nsimulation: seeds run: {n}, faults injected: {faults}, violations: {violations} ({dt:.1f}s)")
    if failing:
        r = run(failing[0].seed, trace=True)
        trace = "\n".join(r.trace[-200:])
        raise AssertionError(f"seed {r.seed}: {r.violations[0]}\nreplay: python -m tests.sim --seed {r.seed} "
                             f"--trace\n{trace}")
    assert n == SEEDS and faults > SEEDS


def test_a_seed_replays_the_same_run():
    a, b = run(7, trace=True), run(7, trace=True)
    assert a.trace == b.trace and a.events == b.events and a.faults == b.faults
