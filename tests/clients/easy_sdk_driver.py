"""Drive the PyPI package `wukong-easy-sdk` (WuKongIM's JSON-RPC SDK) as one client.

Runs in its own process (the SDK is asyncio; the tests are gevent). Commands arrive as
JSON lines on stdin, events leave as JSON lines on stdout:

  {"cmd": "connect"}                               -> {"event": "connected", "result": {...}}
                                                      or {"event": "connect_error", "code": N}
  {"cmd": "ping"}                                  -> {"event": "pong"} or {"event": "ping_error", ...}
  {"cmd": "send", "channelId": "u2", "channelType": 1, "payload": {...}, "clientMsgNo": "..."}
                                                   -> {"event": "sendack", "result": {...}} / "send_error"
  {"cmd": "exit"}
  every received message                          -> {"event": "message", "message": {...}}
  every received message event (JSON-RPC "event")  -> {"event": "customevent", "params": {...}}

Usage: python easy_sdk_driver.py --url ws://127.0.0.1:5200 --uid u1 --token t1 [--device-flag 2]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from wukong_easy_sdk import WKIM, AuthOptions, WKIMError, WKIMEvent, WKIMOptions


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--uid", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--device-flag", type=int, default=2)
    args = ap.parse_args()
    client = WKIM(args.url, AuthOptions(uid=args.uid, token=args.token, device_flag=args.device_flag),
                  WKIMOptions(connect_timeout=5, request_timeout=10, max_reconnect_attempts=0))
    client.on(WKIMEvent.MESSAGE, lambda m: emit({"event": "message", "message": m}))
    client.on(WKIMEvent.CUSTOM_EVENT, lambda e: emit({"event": "customevent", "params": e}))
    client.on(WKIMEvent.DISCONNECT, lambda d: emit({"event": "disconnect", "info": d}))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit({"event": "ready"})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        c = cmd.get("cmd")
        try:
            if c == "connect":
                emit({"event": "connected", "result": await client.connect()})
            elif c == "ping":
                await client.ping()
                emit({"event": "pong"})
            elif c == "send":
                r = await client.send(cmd["channelId"], cmd["channelType"], cmd["payload"],
                                      client_msg_no=cmd.get("clientMsgNo"))
                emit({"event": "sendack", "result": r})
            elif c == "exit":
                break
        except WKIMError as exc:
            emit({"event": f"{c}_error", "code": exc.code, "message": str(exc)})
    await client.destroy()
    emit({"event": "bye"})


if __name__ == "__main__":
    asyncio.run(main())
