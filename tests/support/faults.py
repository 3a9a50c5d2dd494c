"""Fault helpers for black-box tests and `make chaos`: freezing nodes, graceful restarts, watchers.

* ``freeze``/``resume``: SIGSTOP/SIGCONT a node's whole process group (gunicorn master
  and worker alike);
* ``graceful_restart``: SIGTERM, measure how long until every process of the node's
  group is gone, start it again;
* ``VersionWatcher``: polls every node's slot-table version (``/cluster/status``) at a
  fixed rate and records any version that went down;
* ``HttpProbe``: GET calls at a fixed rate (through a load balancer), with failures and
  the slowest answer, per phase;
* ``slots_ready``: every slot of ``/cluster/replication`` has a leader and is ready.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import defaultdict

import gevent

from tests.support.servers import NodeProcess, http


def freeze(node: NodeProcess) -> None:
    os.killpg(node.proc.pid, signal.SIGSTOP)


def resume(node: NodeProcess) -> None:
    os.killpg(node.proc.pid, signal.SIGCONT)


def group_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies waiting to be reaped do not count)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == str(pgid) and not parts[2].startswith("Z"):
            pids.append(int(parts[0]))
    return pids


def sigterm_and_wait(node: NodeProcess, timeout: float = 30.0) -> float:
    """SIGTERM the node's process group; seconds until none of its processes runs (timeout if never)."""
    pgid = node.proc.pid
    t0 = time.monotonic()
    os.killpg(pgid, signal.SIGTERM)
    while time.monotonic() - t0 < timeout:
        node.proc.p.poll()  # reap the leader as soon as it exits
        if not group_members(pgid):
            break
        gevent.sleep(0.05)
    took = time.monotonic() - t0
    if group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
    node.proc.p.wait(10)
    node.proc._log.close()
    return took


def slots_ready(node: NodeProcess) -> bool:
    code, body = http("GET", node.api + "/cluster/replication", timeout=5)
    if code != 200 or not body["slots"]:
        return False
    return all(s["ready"] and s["leader"] for s in body["slots"])


class VersionWatcher:
    """Every node's slot-table version, polled at ``hz``; ``drops`` lists (node, before, after)."""

    def __init__(self, nodes: dict[int, NodeProcess], hz: float = 20.0) -> None:
        self.nodes = nodes
        self.interval = 1.0 / hz
        self.last: dict[int, int] = {}
        self.drops: list[tuple[int, int, int]] = []
        self.polls = 0
        self.seen: dict[int, set[int]] = defaultdict(set)
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._poll, nid) for nid in self.nodes]

    def stop(self) -> None:
        gevent.killall(self._greenlets)

    def _poll(self, nid: int) -> None:
        node = self.nodes[nid]
        while True:
            t0 = time.monotonic()
            try:
                code, body = http("GET", node.api + "/cluster/status", timeout=1)
            except OSError:
                code, body = 0, None
            if code in (200, 503) and isinstance(body, dict) and body.get("slot_table_version"):
                v = int(body["slot_table_version"])  # 0: no table loaded yet (a node starting)
                self.polls += 1
                self.seen[nid].add(v)
                prev = self.last.get(nid, 0)
                if v < prev:
                    self.drops.append((nid, prev, v))
                self.last[nid] = max(prev, v)
            gevent.sleep(max(0.0, self.interval - (time.monotonic() - t0)))


class HttpProbe:
    """GETs ``urls`` in turn every ``interval``; per phase: calls, failures (with reasons), slowest."""

    def __init__(self, urls: list[str], interval: float = 0.2, timeout: float = 15.0) -> None:
        self.urls = urls
        self.interval = interval
        self.timeout = timeout
        self.phase = "start"
        self.calls: dict[str, int] = defaultdict(int)
        self.failures: dict[str, list] = defaultdict(list)
        self.slowest: dict[str, float] = defaultdict(float)
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self) -> None:
        i = 0
        while True:
            url = self.urls[i % len(self.urls)]
            i += 1
            phase = self.phase
            t0 = time.monotonic()
            try:
                code, _ = http("GET", url, timeout=self.timeout)
            except OSError as exc:
                code = repr(exc)[:80]
            took = time.monotonic() - t0
            self.calls[phase] += 1
            self.slowest[phase] = max(self.slowest[phase], took)
            if code != 200:
                self.failures[phase].append((url.split("/", 3)[-1], code, round(took, 2)))
            gevent.sleep(max(0.0, self.interval - took))

    def summary(self, phase: str) -> dict:
        return {"calls": self.calls[phase], "failures": len(self.failures[phase]),
                "slowest_s": round(self.slowest[phase], 2), "failure_samples": self.failures[phase][:5]}


class SlotOutageMonitor:
    """Per slot, the longest time the servers reported it unable to take writes.

    Polls ``/cluster/replication`` of one live, unfrozen node (a different one each time)
    every ``interval``: a slot takes writes when its leader answered the asking node
    and reports the slot ready. Each answer is dated by when it was asked, so a slow
    answer (a frozen leader makes the asking node wait for it) does not blur the
    timeline. ``longest()`` is (seconds, slot, start): the longest run of not-ready answers,
    from the first one to the next ready answer.
    """

    def __init__(self, cluster, paused: set[int], interval: float = 0.25) -> None:
        self.cluster = cluster
        self.paused = paused
        self.interval = interval
        self.samples: dict[int, list[tuple[float, bool]]] = defaultdict(list)
        self.polls = 0
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self) -> None:
        i = 0
        while True:
            nodes = [n for n in self.cluster.live_nodes() if n.node_id not in self.paused]
            if nodes:
                gevent.spawn(self._poll, nodes[i % len(nodes)], time.monotonic())
                i += 1
            gevent.sleep(self.interval)

    def _poll(self, node: NodeProcess, asked: float) -> None:
        try:
            code, body = http("GET", node.api + "/cluster/replication", timeout=10)
        except OSError:
            return
        if code != 200 or not isinstance(body, dict) or not body.get("slots"):
            return
        self.polls += 1
        for s in body["slots"]:
            self.samples[s["slot"]].append((asked, bool(s["ready"] and s["leader"])))

    def windows(self, min_s: float = 0.0) -> list[tuple[float, int, float]]:
        """Every refusal run of at least ``min_s`` seconds: (seconds, slot, monotonic start), longest first."""
        out = []
        for slot, samples in self.samples.items():
            start = None
            for t, ok in sorted(samples):
                if not ok and start is None:
                    start = t
                elif ok and start is not None:
                    if t - start >= min_s:
                        out.append((t - start, slot, start))
                    start = None
        return sorted(out, reverse=True)

    def longest(self) -> tuple[float, int | None, float | None]:
        """(seconds, slot, monotonic time it began) of the longest refusal of any slot."""
        runs = self.windows()
        return runs[0] if runs else (0.0, None, None)
