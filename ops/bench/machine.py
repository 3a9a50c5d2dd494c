"""A description of the machine a benchmark ran on (cores, CPU model, memory, versions)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys


def describe() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        import duckdb
        duck = duckdb.__version__
    except ImportError:
        duck = "?"
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        node = "-"
    return {"cores": os.cpu_count(), "cpu": model or platform.processor(), "memory_gb": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": sys.version.split()[0], "duckdb": duck, "node": node}


def markdown(m: dict) -> str:
    return (f"{m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
            f"Python {m['python']}, DuckDB {m['duckdb']}, Node {m['node']}")
