"""The web manager and the demo chat page in a real browser, against a 3-node cluster.

Playwright (npm ``playwright-core``, tests/clients/browser/) drives Debian's Chromium;
each scenario is a Node script that prints JSON lines and exits 0 when every check
passed. Screenshots go to ``test-artifacts/browser/``. The npm packages (and the SDK's
browser bundle the demo page loads) are installed here when missing.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid

import gevent
import pytest

from gateway.client import WKClient
from tests.support.clients import JS_DIR, ensure_js_sdk
from tests.support.servers import ROOT, Cluster, wait_until

pytestmark = pytest.mark.cluster

BROWSER_DIR = os.path.join(ROOT, "tests", "clients", "browser")
SHOTS = os.path.join(ROOT, "test-artifacts", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SDK_BUNDLE = os.path.join(ROOT, "api", "static", "demo", "vendor", "wkjs.js")
TOKEN = "mgr-" + uuid.uuid4().hex[:12]
SENDS = 5


def ensure_browser_deps() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (make install adds Debian's chromium)")
    if not os.path.exists(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BROWSER_DIR, check=True,
                       env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    ensure_js_sdk()
    if not os.path.exists(SDK_BUNDLE):
        subprocess.run(["npm", "run", "build:browser", "--silent"], cwd=JS_DIR, check=True)


def scenario(script: str, *args: str, timeout: float = 240) -> list[dict]:
    """Run one browser scenario; fail with its report unless it exits 0 with ``{"ok": true}``."""
    started = time.time()
    proc = subprocess.run(["node", script, *args], cwd=BROWSER_DIR, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CHROMIUM": CHROMIUM})
    lines = []
    for line in proc.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"raw": line})
    report = "\n".join(json.dumps(x) for x in lines) + f"\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0 and lines and lines[-1].get("ok") is True, f"{script} failed:\n{report}"
    print(f"{script}: passed in {time.time() - started:.1f}s; page errors: {lines[-1].get('page_logs') or 'none'}")
    return lines


def _trickle(client: WKClient, channel: str, sent: list[int]) -> None:
    """A message every 0.2 s from a client of node 2, so its counters and rates move while the page looks."""
    while True:
        client.send(channel, 2, json.dumps({"type": 1, "content": f"tick {sent[0]}"}).encode())
        sent[0] += 1
        gevent.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    ensure_browser_deps()
    shutil.rmtree(SHOTS, ignore_errors=True)
    c = Cluster(3, extra={"managerToken": TOKEN})
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_manager_overview_connections_channel(cluster):
    hdr = {"token": TOKEN}
    n1, n2 = cluster.nodes[1], cluster.nodes[2]
    watcher, group, busy = "watch" + uuid.uuid4().hex[:6], "grp" + uuid.uuid4().hex[:6], "busy" + uuid.uuid4().hex[:6]
    text = "manager sees this"
    assert n1.post("/user/token", {"uid": watcher, "token": "tk", "device_flag": 1, "device_level": 1},
                   headers=hdr) == (200, {"status": 200})
    for channel in (group, busy):
        assert n1.post("/channel", {"channel_id": channel, "channel_type": 2, "subscribers": [watcher, "other"]},
                       headers=hdr) == (200, {"status": 200})
    payload = base64.b64encode(json.dumps({"type": 1, "content": text}).encode()).decode()
    status, body = n1.post("/message/send", {"from_uid": "other", "channel_id": group, "channel_type": 2,
                                             "payload": payload}, headers=hdr)
    assert status == 200, body
    client = WKClient(f"127.0.0.1:{n2.ports['tcp']}", watcher, "tk")
    client.connect()
    sent = [0]
    traffic = gevent.spawn(_trickle, client, busy, sent)
    try:
        wait_until(lambda: sent[0] >= SENDS, 20, what="the first sends")
        assert n1.get("/manager/overview", base=n1.manager)[0] == 401
        status, ov = n1.get("/manager/overview", base=n1.manager, headers=hdr)
        assert status == 200 and len(ov["nodes"]) == 3 and ov["controller"] in cluster.nodes, ov
        assert {n["id"]: n["messages_in_total"] for n in ov["nodes"]}[2] >= SENDS, ov
        assert n1.get("/", base=n1.manager)[0] == 200  # the page itself is open; its calls are not
        scenario("manager.mjs", "--url", n1.manager, "--token", TOKEN, "--shots", SHOTS, "--nodes", "3",
                 "--conn-node", "2", "--conn-uid", watcher, "--channel", group, "--message", text,
                 "--min-in", str(SENDS))
    finally:
        traffic.kill()
        client.close()


def test_demo_chat_person_and_group(cluster):
    n1, n3 = cluster.nodes[1], cluster.nodes[3]
    demo = lambda n: f"http://127.0.0.1:{n.ports['demo']}"  # noqa: E731
    suffix = uuid.uuid4().hex[:6]
    scenario("demo.mjs", "--url-a", demo(n1), "--url-b", demo(n3), "--shots", SHOTS, "--uid-a", "alice" + suffix,
             "--uid-b", "bob" + suffix, "--group", "room" + suffix)
