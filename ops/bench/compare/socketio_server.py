"""python-socketio group fan-out server for ``make bench-compare`` (one of 3 processes).

Each client joins the rooms named in its connect ``auth`` (``{"rooms": [...]}``); a
``msg`` event ``{"room": r, ...}`` is emitted to everyone in room ``r`` on every
process through python-socketio's ``RedisManager`` (Redis pub/sub). Nothing is stored.

    python socketio_server.py PORT REDIS_URL
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import socketio  # noqa: E402
from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

port, redis_url = int(sys.argv[1]), sys.argv[2]
sio = socketio.Server(async_mode="gevent", client_manager=socketio.RedisManager(redis_url),
                      cors_allowed_origins="*", transports=["websocket"])


@sio.event
def connect(sid, environ, auth):
    for room in (auth or {}).get("rooms", []):
        sio.enter_room(sid, room)


@sio.on("msg")
def msg(sid, data):
    sio.emit("msg", data, room=data["room"])


if __name__ == "__main__":
    print(f"python-socketio listening on {port}", flush=True)
    pywsgi.WSGIServer(("127.0.0.1", port), socketio.WSGIApp(sio), handler_class=WebSocketHandler,
                      log=None).serve_forever()
