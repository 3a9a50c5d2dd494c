"""The CPU scheduling policy of a node's threads (``schedBatch``).

A node is a handful of threads that wake each other all the time: the event loop,
ZeroMQ's I/O thread, the storage workers. Under Linux's default policy a woken thread
usually preempts the one running on its CPU, so a hand-off (a mesh send waking the I/O
thread, a reply waking the loop) is a context switch at once. Under ``SCHED_BATCH``
a wake-up does not preempt: the woken thread runs when the CPU's current task blocks
or its slice ends, and hand-offs pile up into fewer switches. An idle CPU still runs
a woken thread at once; the policy needs no privilege and leaves the nice value alone.
The cost: when every CPU is busy, a woken node thread waits out the running task's
slice, so tails get longer at saturation. Measured both ways in docs/BENCHMARKS.md
("2026-12-04, evening").

``apply`` sets the policy of every thread the process has; threads started later
inherit it from the thread that starts them.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("mesh.base.sched")


def apply(batch: bool) -> str:
    """Put every thread of this process under SCHED_BATCH (``batch``); log and return what was done."""
    said = _apply(batch)
    log.info("scheduling: %s", said)
    return said


def _apply(batch: bool) -> str:
    if not batch:
        return "default scheduling policy (schedBatch off)"
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return "no SCHED_BATCH on this platform: default scheduling policy"
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]  # no /proc: the calling thread only
    failed = []
    for tid in tids:
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(0))
        except OSError as exc:
            failed.append(f"{tid}: {exc.strerror}")
    if failed:
        log.warning("schedBatch: SCHED_BATCH refused for thread(s) %s; they keep the default policy",
                    ", ".join(failed))
    return f"SCHED_BATCH for {len(tids) - len(failed)} of {len(tids)} thread(s) and the threads they start"
