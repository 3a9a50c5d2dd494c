"""gunicorn entry point: ``mesh.wsgi:application`` plus the worker hooks.

gunicorn serves every HTTP-ish port of the node from one worker; ``application``
routes each request to the app of the port it arrived on (API, WebSocket gateway,
management, demo). ``start_node_in_worker`` runs the node in the worker process and
replaces the worker's SIGTERM handler with a graceful drain.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import gevent

from mesh.base.config import Config, split_hostport

log = logging.getLogger("mesh.wsgi")

_node = None
_apps: dict[str, object] = {}


def application(environ, start_response):
    app = _apps.get(environ.get("SERVER_PORT", ""))
    if app is None:
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [b'{"status":"error","message":"node starting"}']
    return app(environ, start_response)


def start_node_in_worker(worker, cfg: Config) -> None:
    global _node
    from api.app import create_apps
    from coordinator.etcd_client import EtcdUnavailable
    from coordinator.membership import DuplicateNodeError
    from mesh.base import logs
    from mesh.node import Node

    logs.setup(cfg.node_id, "DEBUG" if cfg["mode"] == "debug" else cfg["logger.level"], cfg["logger.dir"])
    node = Node(cfg, serve_http=False)
    try:
        node.start()
    except (DuplicateNodeError, EtcdUnavailable, OSError) as exc:
        log.error("cannot start: %s", exc)
        print(f"skein: cannot start node {cfg.node_id}: {exc}", file=sys.stderr)
        node.close()
        os._exit(3)  # gunicorn's WORKER_BOOT_ERROR: the master stops instead of respawning
    _node = node
    for served in create_apps(node):
        _apps[str(split_hostport(served.addr)[1])] = served.app

    draining = []

    def on_term(*_args):
        # SIGTERM arrives twice when a whole process group is signalled (directly, and
        # from the master): only the first one drains, and the worker exits after it.
        if draining:
            return
        draining.append(True)

        def drain():
            node.graceful_stop()
            worker.alive = False
        gevent.spawn(drain)

    signal.signal(signal.SIGTERM, on_term)


def close_node() -> None:
    if _node is not None and not _node.stopping:
        _node.close()
