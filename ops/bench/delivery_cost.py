"""CPU per delivery of the gateway alone: RECV built, encrypted, signed and written to real sockets.

Ten encrypted sessions on socketpairs (a greenlet drains the other ends), 64-byte
payloads, ``Gateway.deliver_batch`` with batches of ``B`` messages; prints the best of
nine runs of the process's CPU time per delivery (CPU time, not wall time, so other
load on the machine disturbs it less). No cluster: this isolates the delivery path.

    .venv/bin/python ops/bench/delivery_cost.py [B ...]     # default: 1 4 16
"""
from __future__ import annotations

import os
import socket
import sys
import time

from gevent import monkey

monkey.patch_all()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import gevent  # noqa: E402

from gateway import wkproto as wk  # noqa: E402
from gateway.listeners import TcpTransport  # noqa: E402
from gateway.ports import Delivery  # noqa: E402
from gateway.session_crypto import client_key_pair  # noqa: E402
from tests.support.gateway_harness import make_gateway  # noqa: E402

PAYLOAD = b'{"type":1,"content":"' + b"x" * 40 + b'"}'


def measure(batch: int, messages: int = 2000, runs: int = 9) -> float:
    gw, tokens, _sink, _pub = make_gateway()
    drains = []

    def drain(sock) -> None:
        while sock.recv(1 << 20):
            pass

    for i in range(10):
        tokens.tokens[(f"u{i}", 1)] = (f"t{i}", 1)
        a, b = socket.socketpair()
        s = gw.open(TcpTransport(a, "pair"))
        _priv, key = client_key_pair()
        s.feed(wk.encode(wk.Connect(5, 1, f"d{i}", f"u{i}", f"t{i}", 0, key)))
        drains.append(gevent.spawn(drain, b))
    uids = [f"u{i}" for i in range(10)]
    best = float("inf")
    mid = 10**6
    for _ in range(runs):
        started = time.process_time()
        for _k in range(0, messages, batch):
            items = []
            for _j in range(batch):
                mid += 1
                items.append((Delivery(mid, mid, "cm", "u0", "g1", 2, 1700000000, PAYLOAD, wk.FLAG_RED_DOT),
                              uids, None))
            gw.deliver_batch(items)
            gevent.sleep(0)
        best = min(best, (time.process_time() - started) / (messages * 10))
        for s in gw.sessions.values():
            s.retry = None
    for s in list(gw.sessions.values()):
        s.close("done")
    gevent.killall(drains)
    return best


def main() -> int:
    for b in [int(a) for a in sys.argv[1:]] or [1, 4, 16]:
        print(f"batch {b:>3}: {measure(b) * 1e6:.1f} us of CPU per delivery (best of 9)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
