"""The committed ops configs, rendered for a test cluster, run by the real nginx, haproxy and Prometheus.

``ops/nginx.conf`` and ``ops/haproxy.cfg`` name the nodes by the deployment guide's
addresses (10.206.0.10, 10.206.0.12, 10.206.0.5 for nodes 1-3) and the guide's ports,
and listen on the guide's external ports; ``ops/prometheus.yml`` scrapes the local
cluster's management ports with an ``id`` label per node. The renderers here change
only those addresses, ports and file paths (every other line stays as committed), so
the tests run the files operators deploy. Each server runs in the foreground under
``tests.support.servers.Proc`` with its files in a temporary directory.
"""
from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import urllib.request
from collections.abc import Mapping
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.servers import ROOT, NodeProcess, Proc, wait_until

OPS = os.path.join(ROOT, "ops")
# The deployment guide's node addresses and per-node ports, as the committed configs use them.
DEPLOY_NODES: dict[str, int] = {"10.206.0.10": 1, "10.206.0.12": 2, "10.206.0.5": 3}
NODE_PORTS: dict[int, str] = {5001: "api", 5100: "tcp", 5200: "ws", 5300: "manager", 5172: "demo"}
# The balancer's own ports: the guide's external ones, plus haproxy's stats page.
FRONT_PORTS: dict[int, str] = {15001: "api", 15100: "tcp", 15200: "ws", 15300: "manager", 15172: "demo", 8404: "stats"}
LOG_DIR = "/var/log/nginx/"

_ADDR = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}):(\d+)\b")
_CHECK_PORT = re.compile(r"\bcheck port (\d+)\b")
_LISTEN = re.compile(r"^(\s*(?:listen|bind)\s+)(?:(?:\*|[\d.]+):)?(\d+)\b")


class RenderError(ValueError):
    """The committed file has an address or port the renderer does not know (so the test would not test it)."""


def render_balancer(text: str, nodes: Mapping[int, Mapping[str, int]], listen: Mapping[str, int], log_dir: str) -> str:
    """``text`` with node ``i``'s guide address and port replaced by ``127.0.0.1:nodes[i][kind]``.

    Also rewrites haproxy's ``check port 5001`` to node ``i``'s API port, every ``listen`` /
    ``bind`` port to ``127.0.0.1:listen[kind]`` and ``/var/log/nginx/`` to ``log_dir``.
    Comment lines are kept as they are.
    """
    out = []
    seen: set[int] = set()
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        line_node: list[int] = []

        def node_addr(m: re.Match, lineno: int = lineno, line_node: list[int] = line_node) -> str:
            ip, port = m.group(1), int(m.group(2))
            if ip not in DEPLOY_NODES:
                return m.group(0)
            node = DEPLOY_NODES[ip]
            if port not in NODE_PORTS or node not in nodes:
                raise RenderError(f"line {lineno}: {m.group(0)} is not a node port the test knows")
            line_node.append(node)
            seen.add(node)
            return f"127.0.0.1:{nodes[node][NODE_PORTS[port]]}"

        def check_port(m: re.Match, lineno: int = lineno, line_node: list[int] = line_node) -> str:
            port = int(m.group(1))
            if not line_node or port not in NODE_PORTS:
                raise RenderError(f"line {lineno}: check port {port} without a known node address")
            return f"check port {nodes[line_node[0]][NODE_PORTS[port]]}"

        def listen_port(m: re.Match, lineno: int = lineno) -> str:
            port = int(m.group(2))
            if port not in FRONT_PORTS or FRONT_PORTS[port] not in listen:
                raise RenderError(f"line {lineno}: listens on {port}, which the test does not map")
            return f"{m.group(1)}127.0.0.1:{listen[FRONT_PORTS[port]]}"

        line = _ADDR.sub(node_addr, line)
        line = _CHECK_PORT.sub(check_port, line)
        line = _LISTEN.sub(listen_port, line)
        out.append(line.replace(LOG_DIR, log_dir.rstrip("/") + "/"))
    if seen != set(nodes):
        raise RenderError(f"the config names nodes {sorted(seen)}, the test cluster has {sorted(nodes)}")
    return "".join(out)


def render_prometheus(text: str, managers: Mapping[int, int], interval: str = "1s") -> str:
    """``ops/prometheus.yml`` scraping the given management ports (by the ``id`` label) every ``interval``.

    The committed targets must be the local cluster's (node i on 127.0.0.1:5299+i).
    """
    cfg: dict[str, Any] = yaml.safe_load(text)
    cfg["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
    ids: list[int] = []
    for job in cfg["scrape_configs"]:
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = interval
        for sc in job["static_configs"]:
            node = int(sc["labels"]["id"])
            if sc["targets"] != [f"127.0.0.1:{5299 + node}"]:
                raise RenderError(f"node {node}: targets {sc['targets']} are not the local cluster's manager port")
            sc["targets"] = [f"127.0.0.1:{managers[node]}"]
            ids.append(node)
    if sorted(ids) != sorted(managers):
        raise RenderError(f"prometheus.yml scrapes nodes {sorted(ids)}, the test cluster has {sorted(managers)}")
    return yaml.safe_dump(cfg, sort_keys=False)


def node_ports(nodes: Mapping[int, NodeProcess]) -> dict[int, dict[str, int]]:
    return {i: dict(n.ports) for i, n in nodes.items()}


class _Server:
    """A server process started by a test helper: its output, and stopping it."""

    proc: Proc | None = None

    def output(self) -> str:
        return self.proc.output() if self.proc else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate(10)
            self.proc = None


class Balancer(_Server):
    """The real nginx or haproxy running the committed config in front of ``nodes``."""

    def __init__(self, kind: str, nodes: Mapping[int, NodeProcess], base: str) -> None:
        if kind not in ("nginx", "haproxy"):
            raise ValueError(kind)
        self.kind = kind
        self.dir = os.path.join(base, kind)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.ports = {k: free_port() for k in ("api", "tcp", "ws", "manager", "demo", "stats")}
        source = os.path.join(OPS, "nginx.conf" if kind == "nginx" else "haproxy.cfg")
        with open(source) as fh:
            self.source_text = fh.read()
        self.text = render_balancer(self.source_text, node_ports(nodes), self.ports, os.path.join(self.dir, "logs"))
        self.config = os.path.join(self.dir, os.path.basename(source))
        with open(self.config, "w") as fh:
            fh.write(self.text)
        self.proc: Proc | None = None

    def _args(self, test: bool = False) -> list[str]:
        if self.kind == "haproxy":
            return ["haproxy", "-c" if test else "-db", "-f", self.config]
        # Debian's modules-enabled/*.conf load modules relative to the prefix.
        link = os.path.join(self.dir, "modules")
        if not os.path.exists(link):
            os.symlink("/usr/share/nginx/modules", link)
        globals_ = f"pid {self.dir}/nginx.pid;" + ("" if test else " daemon off; error_log stderr notice;")
        return ["nginx"] + (["-t"] if test else []) + ["-p", self.dir + "/", "-c", self.config, "-g", globals_]

    def check_config(self) -> str:
        """The balancer's own syntax check of the rendered file (raises with its output on failure)."""
        out = subprocess.run(self._args(test=True), capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f"{self.kind} rejects the rendered config:\n{out.stdout}{out.stderr}")
        return out.stdout + out.stderr

    def start(self) -> None:
        self.check_config()
        self.proc = Proc(self._args(), os.path.join(self.dir, f"{self.kind}.out"))
        wait_until(self._listening, 15, what=f"{self.kind} listening")

    def _listening(self) -> bool:
        if self.proc is not None and not self.proc.alive():
            raise AssertionError(f"{self.kind} exited:\n{self.proc.output()[-3000:]}")
        for kind in ("api", "tcp", "ws", "manager", "demo"):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.ports[kind])) != 0:
                    return False
        return True

    def url(self, kind: str = "api") -> str:
        return f"http://127.0.0.1:{self.ports[kind]}"

    def server_states(self) -> dict[tuple[str, str], str]:
        """haproxy only: {(backend, server): status} from the stats page (UP, DOWN, ...)."""
        with urllib.request.urlopen(self.url("stats") + "/stats;csv", timeout=3) as r:
            data = r.read().decode().lstrip("# ")
        return {(row["pxname"], row["svname"]): row["status"] for row in csv.DictReader(io.StringIO(data))
                if row["svname"] not in ("FRONTEND", "BACKEND")}

    def error_log(self) -> str:
        """nginx only: its error log (where passive health-check decisions are written)."""
        path = os.path.join(self.dir, "logs", "error.log")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as fh:
            return fh.read()


class Prometheus(_Server):
    """The real Prometheus running a rendered copy of ``ops/prometheus.yml``."""

    def __init__(self, managers: Mapping[int, int], base: str, interval: str = "1s") -> None:
        self.dir = os.path.join(base, "prometheus")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.port = free_port()
        with open(os.path.join(OPS, "prometheus.yml")) as fh:
            self.text = render_prometheus(fh.read(), managers, interval)
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as fh:
            fh.write(self.text)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = subprocess.run(["promtool", "check", "config", self.config], capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f"promtool rejects the rendered config:\n{out.stdout}{out.stderr}")
        args = ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.dir}/data",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc = Proc(args, os.path.join(self.dir, "prometheus.out"))
        wait_until(self._ready, 30, interval=0.2, what="prometheus ready")

    def _ready(self) -> bool:
        if self.proc is not None and not self.proc.alive():
            raise AssertionError(f"prometheus exited:\n{self.proc.output()[-3000:]}")
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
            return r.status == 200
