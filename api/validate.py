"""Request-body validation shared by the HTTP API: clear 400s instead of 500s.

Every helper raises ``falcon.HTTPBadRequest`` naming the field and what was wrong, so
malformed JSON, wrong types and missing fields never reach the handlers.
"""
from __future__ import annotations

from typing import Any

import falcon

SPECIAL = ("@", "#", "&")


def body_of(req: falcon.Request, kind: type = dict) -> Any:
    try:
        body = req.get_media(default_when_empty=None)
    except falcon.MediaMalformedError as exc:
        raise falcon.HTTPBadRequest(title="request body is not valid JSON",
                                    description=str(exc.description or "")) from None
    except falcon.HTTPError:
        raise
    except Exception:
        raise falcon.HTTPBadRequest(title="request body is not valid JSON") from None
    if body is None:
        raise falcon.HTTPBadRequest(title="request body is required")
    if not isinstance(body, kind):
        raise falcon.HTTPBadRequest(title=f"request body must be a JSON {'object' if kind is dict else 'array'}")
    return body


def str_field(body: dict, name: str, default: str = "", *, required: bool = False, max_len: int = 4096) -> str:
    v = body.get(name)
    if v is None or v == "":
        if required:
            raise falcon.HTTPBadRequest(title=f"{name} is required")
        return default
    if not isinstance(v, str):
        raise falcon.HTTPBadRequest(title=f"{name} must be a string")
    if len(v) > max_len:
        raise falcon.HTTPBadRequest(title=f"{name} is longer than {max_len} characters")
    return v


def int_field(body: dict, name: str, default: int = 0, *, required: bool = False, lo: int | None = None,
              hi: int | None = None) -> int:
    v = body.get(name)
    if v is None:
        if required:
            raise falcon.HTTPBadRequest(title=f"{name} is required")
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise falcon.HTTPBadRequest(title=f"{name} must be an integer")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise falcon.HTTPBadRequest(title=f"{name} must be between {lo} and {hi}")
    return v


def str_list(body: dict, name: str, *, required: bool = False, max_items: int = 100000) -> list[str]:
    v = body.get(name)
    if v is None:
        if required:
            raise falcon.HTTPBadRequest(title=f"{name} is required")
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise falcon.HTTPBadRequest(title=f"{name} must be an array of strings")
    if len(v) > max_items:
        raise falcon.HTTPBadRequest(title=f"{name} has more than {max_items} items")
    return v


def check_uid(uid: str, name: str = "uid") -> str:
    if any(c in uid for c in SPECIAL):
        raise falcon.HTTPBadRequest(title=f"{name} must not contain '@', '#' or '&'")
    return uid


def required_str(body: dict, name: str, *, max_len: int = 4096) -> str:
    """A string field that must not be blank; surrounding blanks are dropped."""
    v = str_field(body, name, max_len=max_len).strip()
    if not v:
        raise falcon.HTTPBadRequest(title=f"{name} is required")
    return v


def limit_field(body: dict, default: int, maximum: int, name: str = "limit") -> int:
    """WuKongIM's page size: negative is refused, 0 or absent is ``default``, at most ``maximum``."""
    n = int_field(body, name, 0)
    if n < 0:
        raise falcon.HTTPBadRequest(title=f"{name} must not be negative")
    return min(n or default, maximum)
