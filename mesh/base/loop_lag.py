"""How late this node's event loop runs, and how long the garbage collector holds it.

A greenlet asks to wake every ``TICK`` seconds and records how much later than asked
it actually woke (``skein_event_loop_lag_seconds``). Everything on the node (client
frames, mesh requests, replication) waits behind whatever holds the hub, so a lag of
tens of milliseconds means the node is CPU-bound or something blocks the hub; a stall
longer than ``WARN_AFTER`` is logged (at most once every ``WARN_EVERY`` seconds).

Python's cyclic garbage collector stops the whole process while it runs; each pause
is recorded in ``skein_gc_pause_seconds`` by generation, and a pause longer than
``WARN_AFTER`` is logged, so a tail-latency spike can be told apart from CPU pressure.
"""
from __future__ import annotations

import gc
import logging
import time
from typing import Any

import gevent

from mesh.base import metrics

log = logging.getLogger("mesh.base.loop_lag")

TICK = 0.025
WARN_AFTER = 0.5
WARN_EVERY = 10.0

_gc_started = [0.0]


def _run() -> None:
    last_warn = 0.0
    while True:
        asked = time.perf_counter()
        gevent.sleep(TICK)
        lag = max(0.0, time.perf_counter() - asked - TICK)
        metrics.loop_lag.observe(lag)
        if lag > WARN_AFTER and time.monotonic() - last_warn > WARN_EVERY:
            last_warn = time.monotonic()
            log.warning("event loop stalled for %.2fs (CPU-bound, or a call blocked the hub)", lag)


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
