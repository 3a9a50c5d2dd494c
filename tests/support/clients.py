"""Third-party client drivers (the JS SDK in Node, the Easy SDK in Python) as subprocesses.

A driver reads JSON commands on stdin and prints JSON events on stdout, one per line;
``LineClient`` sends commands and waits for matching events.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

from tests.support.servers import ROOT

JS_DIR = os.path.join(ROOT, "tests", "clients", "js")


class LineClient:
    def __init__(self, args: list[str], cwd: str = ROOT, env: dict | None = None) -> None:
        self.p = subprocess.Popen(args, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, text=True, bufsize=1)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        for line in self.p.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.stderr.append("stdout(non-json): " + line)

    def _pump_err(self) -> None:
        for line in self.p.stderr:
            self.stderr.append(line.rstrip())
            if len(self.stderr) > 2000:
                del self.stderr[:1000]

    def cmd(self, **kw) -> None:
        self.p.stdin.write(json.dumps(kw) + "\n")
        self.p.stdin.flush()

    def wait(self, pred, timeout: float = 15.0, what: str = "event") -> dict:
        deadline = time.time() + timeout
        for ev in self.seen:
            if pred(ev):
                self.seen.remove(ev)
                return ev
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if pred(ev):
                return ev
            self.seen.append(ev)
        raise AssertionError(f"timed out waiting for {what}; seen {self.seen[-10:]}; "
                             f"stderr {self.stderr[-15:]}")

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.cmd(cmd="exit")
                self.p.wait(5)
            except Exception:
                self.p.kill()
                self.p.wait(5)


def easy_sdk(url: str, uid: str, token: str, device_flag: int = 2) -> LineClient:
    c = LineClient([sys.executable, os.path.join(ROOT, "tests", "clients", "easy_sdk_driver.py"),
                    "--url", url, "--uid", uid, "--token", token, "--device-flag", str(device_flag)])
    c.wait(lambda e: e["event"] == "ready", 20, "easy sdk driver ready")
    return c


def ensure_js_sdk() -> None:
    """npm install and bundle the JS SDK once (tests/clients/js)."""
    if not os.path.exists(os.path.join(JS_DIR, "node_modules", "wukongimjssdk")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True)
    if not os.path.exists(os.path.join(JS_DIR, "dist", "wkjs.cjs")):
        subprocess.run(["npm", "run", "build", "--silent"], cwd=JS_DIR, check=True)


def js_sdk(url: str, uid: str, token: str, device_flag: int = 1) -> LineClient:
    ensure_js_sdk()
    return LineClient(["node", os.path.join(JS_DIR, "driver.js"), "--url", url, "--uid", uid, "--token", token,
                       "--device-flag", str(device_flag)], cwd=JS_DIR)
