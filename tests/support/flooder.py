"""A hostile client for the admission tests: SENDs to one channel as fast as the socket takes them.

Run as a separate process (so its CPU use does not disturb the test's own clients):

    python -m tests.support.flooder --addr 127.0.0.1:5100 --uid f --token t --channel g1 --type 2 --seconds 20

It never waits for a SENDACK. It stops when the time is up or the server closes the
connection (with ``--reconnect`` it connects again and goes on), then prints one JSON
line: sends written, SENDACKs by reason, the first reason-22 time, the DISCONNECTs it
got (reason, text, time) and when connections closed (seconds from the start).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

from gateway import wkproto as wk  # noqa: E402
from gateway.client import ClientError, WKClient  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--uid", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--channel", required=True)
    ap.add_argument("--type", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--per-write", type=int, default=50, help="SEND frames per socket write")
    ap.add_argument("--reconnect", action="store_true", help="connect again after being disconnected")
    args = ap.parse_args()

    acks: dict[int, int] = {}
    out: dict = {"sends": 0, "connections": 0, "refused_connects": 0, "first_refused": None, "disconnects": [],
                 "closed_at": []}
    t0 = time.monotonic()
    payload = json.dumps({"type": 1, "content": "flood " + "x" * 40}).encode()
    while time.monotonic() - t0 < args.seconds:
        c = WKClient(args.addr, args.uid, args.token, timeout=10)
        try:
            c.connect()
        except ClientError:
            out["refused_connects"] += 1
            gevent.sleep(0.2)
            continue
        out["connections"] += 1
        flood(c, args, t0, payload, acks, out)
        if c.closed.is_set():
            out["closed_at"].append(round(time.monotonic() - t0, 3))
        c.close()
        if not args.reconnect:
            break
    out["acks"] = {str(k): v for k, v in sorted(acks.items())}
    print(json.dumps(out), flush=True)


def flood(c: WKClient, args, t0: float, payload: bytes, acks: dict[int, int], out: dict) -> None:
    """SEND until the time is up or the server closes the connection (then wait a little for the close)."""
    orig = c._on_packet

    def on_packet(p, dec) -> None:
        if p.type == wk.SENDACK:
            acks[p.reason_code] = acks.get(p.reason_code, 0) + 1
            if p.reason_code == wk.REASON_RATE_LIMIT and out["first_refused"] is None:
                out["first_refused"] = round(time.monotonic() - t0, 3)
        elif p.type == wk.DISCONNECT:
            out["disconnects"].append({"reason": p.reason_code, "text": p.reason,
                                       "at": round(time.monotonic() - t0, 3)})
        else:
            orig(p, dec)

    c._on_packet = on_packet
    prefix = uuid.uuid4().hex[:8]
    seq = 0
    cipher = c.cipher
    try:
        while time.monotonic() - t0 < args.seconds and not c.closed.is_set():
            frames = []
            for _ in range(args.per_write):
                seq += 1
                cmn = f"{prefix}-{seq}"
                body, key = payload, ""
                if cipher is not None:
                    body = cipher.encrypt(payload)
                    key = cipher.send_msg_key(seq, cmn, args.channel, args.type, body)
                frames.append(wk.encode(wk.Send(0, seq, cmn, "", args.channel, args.type, 0, key, "", body, 0),
                                        c.version))
            c.send_raw(b"".join(frames))
            out["sends"] += len(frames)
            gevent.sleep(0)
    except ClientError:
        pass
    c.closed.wait(3)


if __name__ == "__main__":
    main()
