"""The local cluster exactly as `make run` starts it: the Procfile under honcho, haproxy in front.

Mirrors the foundation acceptance: within 60 s the load balancer's `/health` answers
200 and `/cluster/nodes` lists 3 nodes and a leader; node 2 runs under its own honcho
(`make run-without N=2` + `make run-node N=2`); `kill -9` of all node 2's processes
leaves 2 nodes listed within 10 s while the balancer stays healthy; node 2 started
again is listed within 10 s. Uses the fixed ports of the README, so nothing else may
hold them.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.support.servers import ROOT, http, wait_until

pytestmark = pytest.mark.cluster

PORTS = [2379, 2380, 6379, 5001, 5002, 5003, 5100, 5101, 5102, 5200, 5201, 5202, 5300, 5301, 5302,
         15001, 15100, 15200, 15300, 11110, 11120, 11130]
LB = "http://127.0.0.1:15001"


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def honcho(args, data, log):
    env = {**os.environ, "SKEIN_DATA": data, "PATH": f"{ROOT}/.venv/bin:{os.environ['PATH']}"}
    return subprocess.Popen([f"{ROOT}/.venv/bin/honcho", "start", *args], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def node2_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", r"skein-node2\]"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def listed(n: int) -> bool:
    code, body = http("GET", LB + "/cluster/nodes", timeout=3)
    return code == 200 and len(body["nodes"]) == n and body["leader"] is not None


def test_make_run_cluster_survives_kill9_of_node2(tmp_path):
    busy = [p for p in PORTS if port_busy(p)]
    assert not busy, f"ports of the local cluster are in use: {busy}; stop `make run` first"
    data = str(tmp_path / "data")
    log = str(tmp_path / "honcho.log")
    main = honcho(["etcd", "redis", "lb", "node1", "node3"], data, log)
    n2 = honcho(["node2"], data, log)
    try:
        t0 = time.time()
        wait_until(lambda: http("GET", LB + "/health", timeout=2)[0] == 200 and listed(3), 60,
                   interval=0.5, what="3-node cluster behind the load balancer")
        print(f"cluster up in {time.time() - t0:.1f}s")
        pids = node2_pids()
        assert len(pids) == 2, pids  # gunicorn master and its worker
        t1 = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: listed(2), 10, interval=0.2, what="2 nodes listed after kill -9 of node 2")
        took = time.time() - t1
        for _ in range(20):  # the balancer keeps answering 200 (node 2 is taken out)
            assert http("GET", LB + "/health", timeout=3)[0] == 200
        stop(n2)
        t2 = time.time()
        n2 = honcho(["node2"], data, log)
        wait_until(lambda: listed(3), 10, interval=0.2, what="node 2 listed again")
        print(f"node 2 gone from the list {took:.1f}s after kill -9; back {time.time() - t2:.1f}s after start")
    finally:
        stop(n2)
        stop(main)
        with open(log, "rb") as fh:
            tail = fh.read().decode(errors="replace")[-3000:]
        print(tail)
