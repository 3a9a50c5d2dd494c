"""This node's live numbers for the web manager, and the mesh call that hands them to other nodes.

``RateTracker`` samples the Prometheus counters ``skein_messages_in_total`` and
``skein_messages_out_total`` every second and keeps a minute of samples; a rate is the
increase from the oldest sample of the last ``window`` seconds to the value now. ``local_stats(node)`` is what one node
reports (connections, users, message totals and rates, health, uptime, memory);
``install(node)`` starts the tracker once per node and answers ``mgr.stats`` on the mesh,
so the manager page of any node can show the whole cluster.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

import gevent
from prometheus_client import REGISTRY

from mesh.base import metrics
from mesh.net import wire

COUNTERS = {"in": "skein_messages_in_total", "out": "skein_messages_out_total"}
_FAST = {"skein_messages_in_total": metrics.messages_in, "skein_messages_out_total": metrics.messages_out}
MESH_METHOD = wire.MGR_STATS


def _read_counter(name: str) -> float:
    # the two sampled counters are read from their cells: REGISTRY.get_sample_value walks every
    # metric of the node (a few ms each second, 4% of a busy node's Python time in a profile)
    fast = _FAST.get(name)
    if fast is not None:
        return fast.total()
    return REGISTRY.get_sample_value(name) or 0.0


class RateTracker:
    """Per-second rates of a few counters, from samples taken by a background greenlet."""

    def __init__(self, counters: dict[str, str] = COUNTERS, *, interval: float = 1.0, window: float = 10.0,
                 keep: int = 60, read: Callable[[str], float] = _read_counter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counters = counters
        self.interval = interval
        self.window = window
        self.read = read
        self.clock = clock
        self.samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=keep)
        self._loop: gevent.Greenlet | None = None

    def sample(self) -> None:
        self.samples.append((self.clock(), {k: self.read(name) for k, name in self.counters.items()}))

    def totals(self) -> dict[str, float]:
        """The counters' values now."""
        return {k: self.read(name) for k, name in self.counters.items()}

    def rates(self) -> dict[str, float]:
        """Per-second increase of each counter from the oldest sample within ``window`` seconds to now."""
        now, current = self.clock(), self.totals()
        base = None
        for t, values in reversed(self.samples):
            if now - t > self.window:
                break
            base = (t, values)
        dt = now - base[0] if base else 0.0
        if dt < self.interval:  # too short a span to mean anything (just started)
            return dict.fromkeys(self.counters, 0.0)
        return {k: round(max(0.0, current[k] - base[1][k]) / dt, 2) for k in self.counters}

    def start(self) -> None:
        if self._loop is None:
            self.sample()
            self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None

    def _run(self) -> None:
        while True:
            gevent.sleep(self.interval)
            self.sample()


def rss_bytes() -> int:
    """This process's resident memory in bytes (0 where /proc is missing)."""
    try:
        with open(f"/proc/{os.getpid()}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def local_stats(node, tracker: RateTracker) -> dict:
    gw = node.gateway
    sessions = gw.all_sessions()
    ok, reasons = node.health()
    totals = tracker.totals()
    rates = tracker.rates()
    return {
        "node_id": node.node_id, "version": node.version, "healthy": ok, "reasons": reasons,
        "connections": len(sessions), "users": len(gw.by_uid),
        "messages_in_total": int(totals["in"]), "messages_out_total": int(totals["out"]),
        "in_rate": rates["in"], "out_rate": rates["out"],
        "uptime_s": int(time.time() - node.started_at), "mem_bytes": rss_bytes(),
    }


def install(node) -> RateTracker:
    """Start this node's rate tracker (once) and answer ``mgr.stats`` on the mesh."""
    tracker = getattr(node, "rate_tracker", None)
    if tracker is None:
        tracker = RateTracker()
        tracker.start()
        node.rate_tracker = tracker
        node.on_stop(tracker.stop)
        node.mesh.handle(MESH_METHOD, lambda _sender, _payload: local_stats(node, tracker))
    return tracker
