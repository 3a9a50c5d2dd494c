"""``schedBatch``: every thread of the process under SCHED_BATCH, threads started later too;
off leaves the default policy. Run in a child process so the test runner keeps its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import json, os, sys, threading
from mesh.base import sched
started = threading.Event(); stop = threading.Event()
before = threading.Thread(target=lambda: (started.set(), stop.wait()))
before.start(); started.wait()
said = sched.apply(sys.argv[1] == "on")
seen = {}
def later():
    seen["later"] = os.sched_getscheduler(0)
t = threading.Thread(target=later); t.start(); t.join()
seen["threads"] = sorted(os.sched_getscheduler(int(tid)) for tid in os.listdir("/proc/self/task"))
stop.set(); before.join()
print(json.dumps({"said": said, **seen}))
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux only")
@pytest.mark.parametrize("on", [True, False])
def test_every_thread_and_every_later_thread_gets_the_policy(on):
    out = subprocess.run([sys.executable, "-c", CHILD, "on" if on else "off"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    got = json.loads(out)
    want = os.SCHED_BATCH if on else os.SCHED_OTHER
    assert got["threads"] == [want, want], got  # the main thread and the one started before
    assert got["later"] == want
    assert ("SCHED_BATCH for 2 of 2 thread(s)" in got["said"]) if on else ("default" in got["said"]), got
