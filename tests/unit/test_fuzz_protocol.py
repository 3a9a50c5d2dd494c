"""Runs the atheris fuzzer of the decoder and the session state machine for 100,000 inputs."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support.servers import ROOT

RUNS = int(os.environ.get("SKEIN_FUZZ_RUNS", "100000"))


def test_fuzz_100k_inputs_no_exception_escapes(tmp_path):
    corpus = tmp_path / "corpus"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fuzz", "fuzz_protocol.py"), f"-runs={RUNS}",
                        "-max_len=4200", "-seed=1", str(corpus)], capture_output=True, text=True, timeout=600,
                       cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    m = re.search(r"Done (\d+) runs", out)
    assert m and int(m.group(1)) >= RUNS, out[-2000:]
    cov = re.findall(r"cov: (\d+)", out)
    print(f"fuzz: {m.group(1)} runs, final coverage {cov[-1] if cov else '?'} edges")
