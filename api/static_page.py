"""A browser page served from ``api/static/<name>/``: its ``index.html`` and its assets."""
from __future__ import annotations

import os

import falcon

STATIC_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class PageIndex:
    """``GET /``: the page's ``index.html``, never cached (the assets it names may change)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "index.html")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        with open(self.path, "rb") as fh:
            resp.data = fh.read()


def add_page(app: falcon.App, name: str) -> str:
    """Route ``/`` to the page's index and ``/static`` to its directory; returns the directory."""
    directory = os.path.join(STATIC_ROOT, name)
    app.add_route("/", PageIndex(directory))
    app.add_static_route("/static", directory)
    return directory
