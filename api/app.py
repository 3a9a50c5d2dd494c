"""Which app serves which port of a node, and the routes of each: ``create_apps(node)``.

Both entry points serve what ``create_apps`` returns: ``mesh.node`` (``python -m mesh``)
starts one gevent WSGI server per address, ``mesh.wsgi`` (gunicorn) dispatches on the
port a request arrived on.

* ``httpAddr`` (5001): ``create_api_app``, the WuKongIM-compatible API, health and the
  cluster admin calls;
* ``manager.addr`` (5300, when ``manager.on``): ``create_manager_app``, `/metrics`,
  health, the cluster admin calls and the whole API again (as WuKongIM's manager port
  does, so the web manager is same-origin), and the web manager itself
  (``api/manager_ui.py``);
* ``demo.addr`` (5172, when ``demo.on``): the demo chat (``api/demo.py``).

Routes are registered here; each resource lives in its own module.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import (
    channels,
    cluster_admin,
    cluster_election,
    cluster_shapes,
    cmd_sync,
    connections,
    conversations,
    errors,
    events,
    manager_ui,
    message_lookups,
    messages,
    system_uids,
    users,
)
from api.auth import ManagerToken
from api.health import Health

# The WuKongIM-compatible API: each module's ``register(app, node)`` adds its routes.
API_MODULES = (users, channels, messages, message_lookups, conversations, connections, cmd_sync, system_uids, events)


class ServedApp(NamedTuple):
    addr: str  # host:port from the config
    app: Callable[..., Any]  # the WSGI app


def create_apps(node) -> list[ServedApp]:
    """Every HTTP app this node serves, with the address it serves it on (per the config).
    The WebSocket ports are not WSGI: the node serves them itself (``gateway.ws_listener``)."""
    cfg = node.cfg
    apps = [ServedApp(cfg["httpAddr"], create_api_app(node))]
    if cfg["manager.on"]:
        apps.append(ServedApp(cfg["manager.addr"], create_manager_app(node)))
    if cfg["demo.on"]:
        from api.demo import create_demo_app
        apps.append(ServedApp(cfg["demo.addr"], create_demo_app(node)))
    return apps


def _register_api(app: falcon.App, node) -> None:
    for mod in API_MODULES:
        mod.register(app, node)


def _base_app(node) -> falcon.App:
    app = falcon.App(cors_enable=True, middleware=[ManagerToken(node.cfg["managerToken"])])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    errors.install(app)
    health = Health(node)
    app.add_route("/health", health)
    app.add_route("/readyz", health)
    app.add_route("/cluster/nodes", cluster_admin.ClusterNodes(node))
    app.add_route("/cluster/status", cluster_admin.ClusterStatus(node))
    app.add_route("/cluster/slots", cluster_admin.ClusterSlots(node))
    app.add_route("/cluster/transfer-leadership", cluster_admin.TransferLeadership(node))
    cluster_admin.register(app, node)
    cluster_shapes.register(app, node)
    cluster_election.register(app, node)
    return app


def create_api_app(node) -> falcon.App:
    from api.openapi import OpenApi

    app = _base_app(node)
    app.add_route("/openapi.json", OpenApi())
    _register_api(app, node)
    return app


class Metrics:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest()


# The page and its static files hold no data; the page itself asks for the token.
MANAGER_OPEN_PATHS = ("/", "/health", "/readyz", "/metrics")
MANAGER_OPEN_PREFIXES = ("/static/",)


def create_manager_app(node) -> falcon.App:
    app = falcon.App(cors_enable=True, middleware=[ManagerToken(node.cfg["managerToken"], open_paths=MANAGER_OPEN_PATHS,
                                                                open_prefixes=MANAGER_OPEN_PREFIXES)])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    errors.install(app)
    health = Health(node)
    app.add_route("/metrics", Metrics())
    app.add_route("/health", health)
    app.add_route("/readyz", health)
    app.add_route("/cluster/nodes", cluster_admin.ClusterNodes(node))
    app.add_route("/cluster/status", cluster_admin.ClusterStatus(node))
    app.add_route("/cluster/slots", cluster_admin.ClusterSlots(node))
    app.add_route("/cluster/transfer-leadership", cluster_admin.TransferLeadership(node))
    cluster_admin.register(app, node)
    cluster_shapes.register(app, node)
    cluster_election.register(app, node)
    _register_api(app, node)  # same-origin API for the web manager
    manager_ui.register(app, node)
    return app
