"""The Falcon apps of a node: the HTTP API (5001) and the management port (5300).

``create_api_app(node)`` serves the WuKongIM-compatible API, health and the cluster
admin calls; ``create_manager_app(node)`` serves `/metrics`, health, the cluster admin
calls and the whole API again (as WuKongIM's manager port does, so the web manager is
same-origin), and the web manager itself (``api/manager_ui.py``).
Routes are registered here; each resource lives in its own module.
"""
from __future__ import annotations

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import cluster_admin, errors, manager_ui
from api.auth import ManagerToken
from api.health import Health


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
    return app


def create_api_app(node) -> falcon.App:
    from api.openapi import OpenApi

    app = _base_app(node)
    app.add_route("/openapi.json", OpenApi())
    for register in node.api_routes:
        register(app)
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
    for register in node.api_routes:  # same-origin API for the web manager
        register(app)
    manager_ui.register(app, node)
    for register in node.manager_routes:
        register(app)
    return app
