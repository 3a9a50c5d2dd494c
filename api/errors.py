"""Error responses in WuKongIM's shape, and the guard that turns crashes into 500s with a log line.

WuKongIM answers bad requests with ``400 {"msg": "<text>", "status": 400}``; Skein uses
the same body for every HTTP error it raises, so clients written against WuKongIM keep
working. An unexpected exception is logged once (with the request path) and answered
with ``500 {"msg": "internal error", "status": 500}``; tests require that never to happen.
Where WuKongIM answers 200 to a request that did nothing (an unknown channel, a banned
group), ``lenient`` logs and counts it.
"""
from __future__ import annotations

import logging

import falcon

from mesh.base import metrics

log = logging.getLogger("api.errors")


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    code = int(exc.status_code)
    msg = exc.title or ""
    if exc.description:
        msg = f"{msg}: {exc.description}" if msg else exc.description
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"msg": msg, "status": code}
    if exc.title == "retry required":  # the retryable failure of a write (no slot leader or no majority)
        resp.media = {"error": "retry required", "msg": exc.description or "", "status": code}
    if exc.headers:
        for k, v in exc.headers.items():
            resp.set_header(k, v)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    log.exception("request %s %s failed", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.media = {"msg": "internal error", "status": 500}


def bad_request(msg: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title=msg)


def lenient(route: str, reason: str, detail: str) -> str:
    """A request WuKongIM answers 200 although nothing (or not what was asked) happened.

    Skein answers 200 too, so app backends that treat any non-200 as failure keep
    working, but says what happened: one log line, the ``skein_api_lenient_answers_total``
    metric, and the returned text for the body where the response shape has room.
    """
    metrics.api_lenient.labels(route, reason).inc()
    log.info("%s answered 200 (%s): %s", route, reason, detail)
    return f"{reason}: {detail}"


def install(app: falcon.App) -> None:
    """WuKongIM-shaped bodies for HTTP errors; unexpected exceptions become a logged 500."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)


def _http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: dict) -> None:
    resp.status = exc.status
    serialize_error(req, resp, exc)
