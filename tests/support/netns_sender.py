"""A client that keeps sending to one node, printing every outcome as a JSON line.

Run inside a network namespace (``ip netns exec NS python netns_sender.py ...``) so it
stays connected to a partitioned node. Each line: ``{"cmn", "channel", "start", "end",
"reason", "seq", "mid"}`` (reason -1: no SENDACK within the timeout, -2: connection gone).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.client import ClientError, WKClient  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--uid", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--to", required=True, help="comma-separated peer uids (person chats)")
    ap.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args()
    peers = args.to.split(",")
    c = WKClient(args.addr, args.uid, args.token, timeout=3)
    c.connect()
    print(json.dumps({"event": "connected"}), flush=True)
    def one(peer: str, cmn: str) -> None:
        start = time.time()
        try:
            _seq, ar = c.send_nowait(peer, 1, json.dumps({"type": 1, "content": cmn}).encode(), client_msg_no=cmn)
            ack = ar.get(timeout=4)
            reason, seq, mid = (ack.reason_code, ack.message_seq, ack.message_id) if ack else (-2, 0, 0)
        except (ClientError, gevent.Timeout):
            reason, seq, mid = (-2 if c.closed.is_set() else -1), 0, 0
        print(json.dumps({"cmn": cmn, "channel": peer, "start": start, "end": time.time(), "reason": reason,
                          "seq": seq, "mid": mid}), flush=True)

    n = 0
    while not c.closed.is_set():  # sends do not wait for each other: many are in flight during a partition
        for peer in peers:
            n += 1
            gevent.spawn(one, peer, f"ns-{n}-{uuid.uuid4().hex[:6]}")
            gevent.sleep(args.interval)


if __name__ == "__main__":
    main()
