"""gunicorn settings for one Skein node: `WK_CONFIG=node.yaml gunicorn -c ops/gunicorn.conf.py`.

One worker is one node (worker class GeventWebSocketWorker). gunicorn binds the HTTP
API, management and demo ports from the node config and the WSGI app dispatches on the
listening port; the node itself (etcd, ZeroMQ, the client listeners: TCP, WebSocket
`wsAddr` and `wssAddr`, see gateway/ws_listener.py) starts inside the worker after the
fork (``post_worker_init``), never in the master, as gRPC requires. SIGTERM to the master
reaches the worker, which drains first (/health 503, slots handed over, clients closed,
lease revoked) and then exits.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mesh.base import config as _config  # noqa: E402
from mesh.base.config import split_hostport  # noqa: E402

try:
    _cfg = _config.load(os.environ.get("WK_CONFIG") or None)
except _config.ConfigError as _exc:
    print(f"skein: invalid configuration: {_exc}", file=sys.stderr)
    sys.exit(2)


def _hp(key: str) -> str:
    host, port = split_hostport(_cfg[key])
    return f"{host}:{port}"


bind = [_hp("httpAddr")]
if _cfg["manager.on"]:
    bind.append(_hp("manager.addr"))
if _cfg["demo.on"]:
    bind.append(_hp("demo.addr"))
workers = 1
worker_class = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
# HTTP connections only (API, manager, demo): the node serves the client ports itself
worker_connections = 10000
wsgi_app = "mesh.wsgi:application"
control_socket_disable = True
graceful_timeout = 30
timeout = 30
keepalive = 5
backlog = 4096
accesslog = None
errorlog = "-"
loglevel = "warning"
proc_name = f"skein-node{_cfg.node_id}"


def post_worker_init(worker):
    from mesh import wsgi

    wsgi.start_node_in_worker(worker, _cfg)


def worker_exit(server, worker):
    from mesh import wsgi

    wsgi.close_node()
