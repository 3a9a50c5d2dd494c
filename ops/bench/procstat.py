"""CPU time and context switches of a set of server processes, read from /proc while a benchmark runs.

``Sampler(pids)`` polls every process (and its descendants, for gunicorn's workers)
in a background thread; ``between(t0, t1)`` gives the CPU seconds and context switches
spent in a wall-clock window, interpolated between samples, so a benchmark can divide
them by the deliveries its load processes counted in the same window.
"""
from __future__ import annotations

import os
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, context switches) of one process so far, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0, 0
    switches = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/status") as fh:
                for line in fh:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
    except OSError:
        pass
    return cpu, switches


def allowed_cpus(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split()[1]
    except OSError:
        pass
    return "?"


class Sampler:
    """Samples {name: pid} every ``interval`` seconds until ``stop()``."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[str, tuple[float, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = time.time()
        row = {}
        for name, pid in self.pids.items():
            cpu, sw = 0.0, 0
            for p in descendants(pid):
                c, s = usage(p)
                cpu += c
                sw += s
            row[name] = (cpu, sw)
        self.samples.append((now, row))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _at(self, t: float) -> dict[str, tuple[float, float]]:
        before = [s for s in self.samples if s[0] <= t] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= t] or self.samples[-1:]
        (ta, a), (tb, b) = before[-1], after[0]
        f = 0.0 if tb <= ta else (t - ta) / (tb - ta)
        return {n: (a[n][0] + f * (b[n][0] - a[n][0]), a[n][1] + f * (b[n][1] - a[n][1])) for n in a}

    def between(self, t0: float, t1: float) -> dict[str, tuple[float, float]]:
        """{name: (CPU seconds, context switches)} spent from ``t0`` to ``t1`` (wall clock)."""
        a, b = self._at(t0), self._at(t1)
        return {n: (b[n][0] - a[n][0], b[n][1] - a[n][1]) for n in a}
