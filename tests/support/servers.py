"""Real servers for integration and cluster tests: etcd, Redis and Skein node processes.

Every server gets random free ports and a temporary data directory, and is stopped
(and its directory removed) by the fixture that started it. Node processes run
``python -m mesh --config FILE`` (or gunicorn) with their output in ``<dir>/node.log``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from tests.support.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.time() + timeout
    last_exc = None
    while time.time() < deadline:
        try:
            result = pred()
            if result:
                return result
        except AssertionError:
            raise  # a predicate that knows it can never succeed (a process exited) stops the wait
        except Exception as exc:  # noqa: BLE001 - we retry until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


class Proc:
    def __init__(self, args: list[str], logfile: str, env: dict | None = None, cwd: str = ROOT) -> None:
        self.args = args
        self.logfile = logfile
        self._log = open(logfile, "ab")
        self.p = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
                                  env={**os.environ, **(env or {})}, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill9(self) -> None:
        """kill -9 the process group (gunicorn master and worker alike)."""
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        self._log.close()
        return self.p.returncode

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.logfile, "rb") as fh:
            return fh.read().decode(errors="replace")


class EtcdServer:
    def __init__(self, base: str) -> None:
        self.dir = os.path.join(base, "etcd")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.peer_port = free_port()
        self.proc: Proc | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, existing: bool = False, also_listen: tuple[str, ...] = ()) -> None:
        self.also_listen = also_listen or getattr(self, "also_listen", ())
        urls = ",".join([f"http://127.0.0.1:{self.port}"] + [f"http://{h}:{self.port}" for h in self.also_listen])
        args = ["etcd", "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
                "--listen-client-urls", urls,
                "--advertise-client-urls", f"http://127.0.0.1:{self.port}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster", f"t=http://127.0.0.1:{self.peer_port}",
                "--initial-cluster-state", "existing" if existing else "new",
                "--heartbeat-interval", "10", "--election-timeout", "100",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error"]
        self.proc = Proc(args, os.path.join(self.dir, "etcd.log"))
        wait_until(self.healthy, 20, what="etcd health")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate(10)
            self.proc = None

    def kill(self) -> None:
        if self.proc:
            self.proc.kill9()
            self.proc = None


class RedisServer:
    def __init__(self, base: str) -> None:
        self.dir = os.path.join(base, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, also_listen: tuple[str, ...] = (), password: str = "") -> None:
        self.password = password
        args = ["redis-server", "--bind", " ".join(("127.0.0.1",) + tuple(also_listen)), "--port", str(self.port),
                "--protected-mode", "no" if also_listen else "yes", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        if password:
            args += ["--requirepass", password]
        self.proc = Proc(args, os.path.join(self.dir, "redis.log"))
        wait_until(self.ping, 10, what="redis ping")

    def ping(self) -> bool:
        auth = ["-a", self.password, "--no-auth-warning"] if getattr(self, "password", "") else []
        out = subprocess.run(["redis-cli", "-p", str(self.port), *auth, "ping"], capture_output=True, text=True)
        return "PONG" in out.stdout

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate(10)
            self.proc = None


class NodeProcess:
    """One Skein node on random ports with its own data dir and YAML config."""

    def __init__(self, base: str, node_id: int, etcd: str, redis_url: str, extra: dict | None = None,
                 gunicorn: bool = False, cluster: str = "test", host: str = "127.0.0.1",
                 netns: str | None = None) -> None:
        self.node_id = node_id
        self.host = host
        self.netns = netns
        self.dir = os.path.join(base, f"node{node_id}")
        os.makedirs(self.dir, exist_ok=True)
        self.ports = {k: free_port() for k in ("api", "tcp", "ws", "manager", "demo", "router", "pub")}
        self.gunicorn = gunicorn
        cfg: dict[str, Any] = {
            "mode": "test",
            "rootDir": os.path.join(self.dir, "data"),
            "httpAddr": f"{host}:{self.ports['api']}",
            "tcpAddr": f"{host}:{self.ports['tcp']}",
            "wsAddr": f"ws://{host}:{self.ports['ws']}",
            "manager": {"addr": f"{host}:{self.ports['manager']}"},
            "demo": {"addr": f"{host}:{self.ports['demo']}"},
            "cluster": {"nodeId": node_id, "name": cluster,
                        "serverAddr": f"{host}:{self.ports['router']}",
                        "pubAddr": f"{host}:{self.ports['pub']}",
                        "leaseTTL": 2, "heartbeatInterval": "500ms", "drainDelay": "200ms"},
            "etcd": {"endpoints": [etcd]},
            "redis": {"url": redis_url},
        }
        for k, v in (extra or {}).items():
            _set_path(cfg, k, v)
        self.cfg = cfg
        self.config_path = os.path.join(self.dir, "node.yaml")
        self.write_config()
        self.proc: Proc | None = None

    def write_config(self) -> None:
        with open(self.config_path, "w") as fh:
            yaml.safe_dump(self.cfg, fh)

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.ports['api']}"

    @property
    def manager(self) -> str:
        return f"http://{self.host}:{self.ports['manager']}"

    def start(self, wait_healthy: bool = True, env: dict | None = None, timeout: float = 30) -> None:
        if self.gunicorn:
            args = [os.path.join(os.path.dirname(PYTHON), "gunicorn"), "-c", os.path.join(ROOT, "ops", "gunicorn.conf.py")]
            env = {**(env or {}), "WK_CONFIG": self.config_path}
        else:
            args = [PYTHON, "-m", "mesh", "--config", self.config_path]
        if self.netns:
            args = ["ip", "netns", "exec", self.netns] + args
        self.proc = Proc(args, os.path.join(self.dir, "node.log"), env=env)
        if wait_healthy:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30) -> None:
        def ok():
            if self.proc and not self.proc.alive():
                raise AssertionError(f"node {self.node_id} exited: {self.proc.output()[-3000:]}")
            return self.get("/health")[0] == 200
        try:
            wait_until(ok, timeout, what=f"node {self.node_id} healthy")
        except AssertionError:
            print(self.proc.output()[-5000:] if self.proc else "")
            raise

    def get(self, path: str, base: str | None = None, headers: dict | None = None) -> tuple[int, Any]:
        return http("GET", (base or self.api) + path, headers=headers)

    def post(self, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        return http("POST", self.api + path, body, headers=headers)

    def kill9(self) -> None:
        if self.proc:
            self.proc.kill9()

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc:
            return self.proc.terminate(timeout)
        return None


def uniq(prefix: str) -> str:
    """A name no other test uses (uids, channel ids)."""
    return prefix + uuid.uuid4().hex[:8]


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def http(method: str, url: str, body: Any = None, headers: dict | None = None, timeout: float = 10) -> tuple[int, Any]:
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Cluster:
    """etcd + Redis + N nodes, all torn down by ``close()``."""

    def __init__(self, n: int = 3, extra: dict | None = None, gunicorn: bool = False) -> None:
        self.base = tempfile.mkdtemp(prefix="skein-test-")
        self.etcd = EtcdServer(self.base)
        self.redis = RedisServer(self.base)
        self.extra = extra or {}
        self.gunicorn = gunicorn
        self.nodes: dict[int, NodeProcess] = {}
        self.n = n

    def start(self) -> Cluster:
        self.etcd.start()
        self.redis.start()
        for i in range(1, self.n + 1):
            self.add_node(i, wait=False)
        for node in self.nodes.values():
            node.wait_healthy(45)
        return self

    def add_node(self, node_id: int, wait: bool = True, extra: dict | None = None) -> NodeProcess:
        node = NodeProcess(self.base, node_id, self.etcd.endpoint, self.redis.url,
                           extra={**self.extra, **(extra or {})}, gunicorn=self.gunicorn)
        self.nodes[node_id] = node
        node.start(wait_healthy=wait)
        return node

    def wait_slots_ready(self, timeout: float = 30, via: int = 1) -> None:
        """Wait until every slot has a ready leader, as node ``via`` sees the table."""
        n = self.nodes[via]
        wait_until(lambda: all(s["ready"] for s in n.get("/cluster/slots")[1]["slots"]), timeout, what="slots ready")

    def live_nodes(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.proc and n.proc.alive()]

    def close(self) -> None:
        for node in self.nodes.values():
            try:
                node.stop(timeout=10)
            except Exception:
                node.kill9()
        self.redis.stop()
        self.etcd.stop()
        if os.environ.get("SKEIN_KEEP_TEST_DIRS"):
            print(f"test dirs kept in {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def ready_cluster(n: int = 3, extra: dict | None = None) -> Iterator[Cluster]:
    """A started cluster whose every slot is ready, closed on the way out (the body of most fixtures)."""
    c = Cluster(n, extra=extra)
    try:
        c.start()
        c.wait_slots_ready()
        yield c
    finally:
        c.close()
