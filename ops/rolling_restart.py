"""Rolling restart of a Skein cluster, one node at a time, without losing a write.

For each node (the controller last): wait until the cluster is settled (every node
healthy, every slot's leader ready, no slot copying to a learner, no replica lagging);
stop the node (SIGTERM: it turns ``/health`` 503 so load balancers drain it, hands its
slot leaderships over, closes its clients, leaves etcd); wait until it has left the
member list; start it; wait until its ``/health`` is 200 (joined and caught up) and the
cluster is settled again. Clients see only reconnects.

``rolling_restart()`` takes the stop and start actions as callables (tests pass
process handles); the ``ops/rolling-restart`` command runs shell commands such as
``systemctl restart``.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable

log = logging.getLogger("rolling-restart")


class RestartError(Exception):
    pass


def _get(url: str, token: str = "", timeout: float = 5.0):
    req = urllib.request.Request(url, headers={"token": token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (OSError, ValueError):
        return 0, None


def _wait(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise RestartError(f"timed out after {timeout:.0f}s waiting for {what}")


def settled(api: str, token: str, expect: int | None = None) -> bool:
    """Every member healthy, every slot ready and led by a member, no learner, no lagging replica."""
    code, nodes = _get(api + "/cluster/nodes", token)
    if code != 200 or (expect is not None and len(nodes["nodes"]) != expect):
        return False
    members = {n["id"] for n in nodes["nodes"]}
    for n in nodes["nodes"]:
        if _get(n["api_url"].rstrip("/") + "/health", token)[0] != 200:
            return False
    code, slots = _get(api + "/cluster/slots", token)
    if code != 200 or not all(s["ready"] and s["leader"] in members and not s["learners"] for s in slots["slots"]):
        return False
    code, repl = _get(api + "/cluster/replication", token, timeout=10)
    if code != 200:
        return False
    return all(r["lag"] in (0, None) for s in repl["slots"] for r in s["replicas"] if r["live"])


def _members(api: str, token: str) -> set[int]:
    code, body = _get(api + "/cluster/nodes", token)
    return {m["id"] for m in body["nodes"]} if code == 200 else set()


def rolling_restart(api: str, stop: Callable[[int], None], start: Callable[[int], None], *, token: str = "",
                    node_timeout: float = 120.0, report: Callable[[str], None] = print) -> list[dict]:
    api = api.rstrip("/")
    code, nodes = _get(api + "/cluster/nodes", token)
    if code != 200:
        raise RestartError(f"cannot list the cluster's nodes at {api}: HTTP {code}")
    order = sorted((n for n in nodes["nodes"]), key=lambda n: (n["id"] == nodes["leader"], n["id"]))
    total = len(order)
    done = []
    for n in order:
        nid = n["id"]
        others = [m["api_url"].rstrip("/") for m in order if m["id"] != nid]
        via = others[0] if others else api
        _wait(lambda via=via: settled(via, token, total), node_timeout, "the cluster to settle")
        t0 = time.time()
        report(f"node {nid}: stopping (drain: /health 503, slot leaderships handed over)")
        stop(nid)
        _wait(lambda nid=nid, via=via: nid not in _members(via, token), node_timeout,
              f"node {nid} to leave the member list")
        stopped = time.time()
        report(f"node {nid}: left after {stopped - t0:.1f}s; starting")
        start(nid)
        health = n["api_url"].rstrip("/") + "/health"
        _wait(lambda health=health: _get(health, token)[0] == 200, node_timeout, f"node {nid} to be healthy (caught up)")
        _wait(lambda via=via: settled(via, token, total), node_timeout, "the cluster to settle after the restart")
        took = {"node": nid, "drain_s": round(stopped - t0, 1), "back_s": round(time.time() - stopped, 1)}
        report(f"node {nid}: back and caught up {took['back_s']}s after it left")
        done.append(took)
    return done
