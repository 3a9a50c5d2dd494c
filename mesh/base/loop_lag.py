"""How late this node's event loop runs, and how long the garbage collector holds it.

A greenlet asks to wake every ``TICK`` seconds and records how much later than asked
it actually woke (``skein_event_loop_lag_seconds``). Everything on the node (client
frames, mesh requests, replication) waits behind whatever holds the hub, so a lag of
tens of milliseconds means the node is CPU-bound or something blocks the hub; a stall
longer than ``WARN_AFTER`` is logged (at most once every ``WARN_EVERY`` seconds).

Python's cyclic garbage collector stops the whole process while it runs; each pause
is recorded in ``skein_gc_pause_seconds`` by generation, and a pause longer than
``WARN_AFTER`` is logged, so a tail-latency spike can be told apart from CPU pressure.

``recent_lag()`` (the average over the last few seconds) is what `/health` compares
with ``health.maxLoopLag`` to report the node as overloaded.
"""
from __future__ import annotations

import gc
import logging
import time
from collections import deque
from typing import Any

import gevent

from mesh.base import metrics

log = logging.getLogger("mesh.base.loop_lag")

TICK = 0.025
WARN_AFTER = 0.5
WARN_EVERY = 10.0

_gc_started = [0.0]
RECENT = 5.0  # seconds averaged by recent_lag()
_recent: deque[tuple[float, float]] = deque(maxlen=int(RECENT / TICK) + 1)  # (woke at, lag)


def _run() -> None:
    last_warn = 0.0
    while True:
        asked = time.perf_counter()
        gevent.sleep(TICK)
        woke = time.perf_counter()
        lag = max(0.0, woke - asked - TICK)
        metrics.loop_lag.observe(lag)
        _recent.append((woke, lag))
        if lag > WARN_AFTER and time.monotonic() - last_warn > WARN_EVERY:
            last_warn = time.monotonic()
            log.warning("event loop stalled for %.2fs (CPU-bound, or a call blocked the hub)", lag)


def recent_lag(now: float | None = None) -> float:
    """Average lag over the last ``RECENT`` seconds, counting the current wait if the probe is overdue."""
    now = time.perf_counter() if now is None else now
    samples = [lag for t, lag in _recent if now - t <= RECENT]
    if _recent:
        overdue = now - _recent[-1][0] - TICK
        if overdue > 0.1:
            samples.append(overdue)
    return sum(samples) / len(samples) if samples else 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    pause = time.perf_counter() - _gc_started[0]
    gen = info.get("generation", 0)
    metrics.gc_pause.labels(str(gen)).observe(pause)
    if pause > WARN_AFTER:
        log.warning("garbage collection of generation %d paused the node for %.2fs (%d objects freed)",
                    gen, pause, info.get("collected", 0))


def start() -> gevent.Greenlet:
    """Start the lag probe and the GC pause recorder (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    return gevent.spawn(_run)
