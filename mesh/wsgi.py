"""gunicorn entry point: ``mesh.wsgi:application`` plus the worker hooks.

gunicorn serves every HTTP-ish port of the node from one worker; ``application``
routes each request to the app of the port it arrived on (API, management, demo; the
node serves the client ports, WebSocket included, itself). ``start_node_in_worker`` runs the node in the worker process and
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

EXIT_GRACE = 1.5  # at most this long after the node's stop, the worker exits

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
    from mesh.base import logs, sched
    from mesh.node import Node

    logs.setup(cfg.node_id, "DEBUG" if cfg["mode"] == "debug" else cfg["logger.level"], cfg["logger.dir"])
    sched.apply(cfg["schedBatch"])
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
            try:
                node.graceful_stop()
            finally:
                exit_soon(worker)
        gevent.spawn(drain)

    signal.signal(signal.SIGTERM, on_term)


def exit_soon(worker) -> None:
    """End the worker within a second or two of the node's stop, whatever its connections do.

    gunicorn's worker waits up to ``graceful_timeout`` (30 s, sized for the drain) for
    its open connections after ``alive`` turns false, and an idle keep-alive connection
    (a load balancer's, a browser's) holds it that long although the node has stopped.
    The node is gone by now (store, etcd session and mesh closed): the worker stops
    its servers at once and exits, at the latest EXIT_GRACE seconds later (and the
    master with it, when it is stopping too).
    """
    try:
        worker.cfg.set("graceful_timeout", 0)
    except Exception:  # pragma: no cover - an older gunicorn: the backstop below still applies
        pass
    worker.alive = False

    def backstop() -> None:
        log.info("worker exiting %.1fs after the node stopped (connections still open)", EXIT_GRACE)
        logging.shutdown()
        os._exit(0)
    gevent.spawn_later(EXIT_GRACE, backstop)


def close_node() -> None:
    if _node is not None and not _node.stopping:
        _node.close()
