"""A network namespace joined to the host by a veth pair, to cut a node off for real.

``Netns`` creates ``skein-<id>`` with ``10.<a>.<b>.2`` inside and ``10.<a>.<b>.1`` on the
host side; ``cut()`` takes the host end down (everything between the namespace and
the host stops, in both directions, with no resets), ``heal()`` brings it back.
Needs root (CI runs as root); ``available()`` says whether this machine allows it.
"""
from __future__ import annotations

import os
import random
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def available() -> bool:
    if os.geteuid() != 0:
        return False
    name = f"skprobe{random.randint(0, 99999)}"
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return False
    _ip("netns", "del", name, check=False)
    return True


class Netns:
    def __init__(self) -> None:
        n = random.randint(1, 250)
        self.name = f"skein-{os.getpid()}-{n}"
        self.host_if = f"skh{n}x{os.getpid() % 1000}"
        self.ns_if = f"skn{n}x{os.getpid() % 1000}"
        self.host_ip = f"10.213.{n}.1"
        self.ns_ip = f"10.213.{n}.2"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if)
        _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_if, "up")
        _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
