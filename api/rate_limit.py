"""Rate limits of HTTP ``/message/send``: per ``from_uid`` and per API token.

Over a limit the answer is HTTP 429 with WuKongIM's error body
``{"msg": "...", "status": 429}`` (WuKongIM v2.2.5 has no HTTP rate limit of its own;
its errors all take this shape) and a ``Retry-After`` header. The system uid (an empty
``from_uid``) is exempt from the per-uid limit, and the manager token from the
per-token limit. The per-``from_uid`` counts are shared across nodes through Redis
(``coordinator.rate_counts``); the per-token ones are per node.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

import falcon

from gateway.admission import KeyedLimiter, LogThrottle
from mesh.base import metrics
from mesh.im.channel_rules import SYSTEM_UID

log = logging.getLogger("api.rate_limit")


class HttpSendLimits:
    def __init__(self, cfg, rate_counts=None) -> None:
        self.manager_token = cfg["managerToken"]
        self.by_uid = KeyedLimiter(cfg["limits.httpFromUidRate"], cfg["limits.httpFromUidBurst"])
        self.by_token = KeyedLimiter(cfg["limits.httpTokenRate"], cfg["limits.httpTokenBurst"])
        if rate_counts is not None:
            rate_counts.add("http-uid", self.by_uid)
        self.throttle = LogThrottle(60.0)
        self._pruned = time.monotonic()

    def check(self, from_uid: str, token: str) -> None:
        """Raise 429 when ``from_uid`` or ``token`` is over its limit (takes one token from each otherwise)."""
        now = time.monotonic()
        if now - self._pruned > 30:
            self._pruned = now
            self.prune()
        if not (self.manager_token and token == self.manager_token):
            tkey = hashlib.sha256(token.encode()).hexdigest()[:16]  # never keep or log the secret itself
            if not self.by_token.take(tkey, now):
                self._refuse("token", f"token {tkey[:8]}…", self.by_token.wait_time(tkey, now), now)
        if from_uid != SYSTEM_UID and not self.by_uid.take(from_uid, now):
            self._refuse("from_uid", f"from_uid {from_uid}", self.by_uid.wait_time(from_uid, now), now)

    def _refuse(self, scope: str, who: str, wait: float, now: float) -> None:
        metrics.http_rate_limited.labels(scope).inc()
        n = self.throttle.hit(who, now)
        if n is not None:
            log.warning("rate limit: /message/send of %s answered 429 (%s limit); %d refusal(s) since the last "
                        "line, logged once a minute", who, scope, n)
        retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 60
        raise falcon.HTTPTooManyRequests(title=f"rate limit exceeded for {scope}: too many messages, slow down",
                                         retry_after=retry)

    def prune(self) -> None:
        now = time.monotonic()
        self.by_uid.prune(now)
        self.by_token.prune(now)
        self.throttle.prune(now)
