"""The machine's ceiling for group fan-out: a bare gevent WebSocket server (one of 3).

No protocol, no storage, no per-recipient work: a client names its rooms in the URL
(``/?rooms=a,b``); a text message ``room|body`` is framed once as a WebSocket frame
and that pre-encoded frame is written to the socket of every local member of the room,
and published once over ZeroMQ to the other processes, which do the same for theirs.

    python bare_server.py PORT ZMQ_PUB_PORT PEER_PUB_PORT...
"""
from gevent import monkey

monkey.patch_all()

import struct  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
import zmq.green as zmq  # noqa: E402
from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

port, pub_port, peers = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
rooms: dict[str, set] = defaultdict(set)
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.bind(f"tcp://127.0.0.1:{pub_port}")


def frame(text: bytes) -> bytes:
    n = len(text)
    if n < 126:
        return bytes([0x81, n]) + text
    if n < 65536:
        return bytes([0x81, 126]) + struct.pack(">H", n) + text
    return bytes([0x81, 127]) + struct.pack(">Q", n) + text


def push(room: str, data: bytes) -> None:
    encoded = frame(data)
    for sock in list(rooms.get(room, ())):
        try:
            sock.sendall(encoded)
        except OSError:
            pass


def subscriber() -> None:
    sub = ctx.socket(zmq.SUB)
    for p in peers:
        sub.connect(f"tcp://127.0.0.1:{p}")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    while True:
        data = sub.recv()
        push(data.split(b"|", 1)[0].decode(), data)


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [])
        return [b"websocket only"]
    names = parse_qs(environ.get("QUERY_STRING", "")).get("rooms", [""])[0].split(",")
    sock = ws.handler.socket
    for r in names:
        rooms[r].add(sock)
    try:
        while True:
            msg = ws.receive()
            if msg is None:
                break
            data = msg.encode() if isinstance(msg, str) else msg
            pub.send(data)
            push(data.split(b"|", 1)[0].decode(), data)
    finally:
        for r in names:
            rooms[r].discard(sock)
    return []


if __name__ == "__main__":
    gevent.spawn(subscriber)
    print(f"bare websocket server listening on {port}", flush=True)
    pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None).serve_forever()
