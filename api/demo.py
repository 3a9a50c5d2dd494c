"""The demo chat page (port 5172): static files served by Falcon."""
from __future__ import annotations

import os

import falcon

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "demo")


class _Index:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_HTML
        resp.text = "<!doctype html><title>Skein demo</title><p>Skein demo chat.</p>"


def create_demo_app(node) -> falcon.App:
    app = falcon.App()
    app.add_route("/", _Index())
    if os.path.isdir(STATIC):
        app.add_static_route("/static", STATIC)
    return app
