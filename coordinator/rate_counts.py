"""Cluster-wide send counts in Redis for the keyed rate limiters (per uid, per HTTP from_uid).

Every ``limits.syncInterval`` the node adds what each key used in the last two seconds
took here since the last sync (possibly 0, which just reads the count) to
``skein:<cluster>:rl:<name>:<key>`` (``INCRBY`` + ``EXPIRE``, one pipeline for every
limiter) and hands the new totals back to the limiter, which charges each local bucket
what the other nodes took (``KeyedLimiter.apply_totals``). A uid sending from three
nodes therefore drains one shared budget, give or take one interval. Admission
itself never waits for Redis: while Redis is down the sync is skipped and every
limiter is a per-node limit (the fallback), and the counts start fresh when it returns.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import gevent
import redis

from mesh.base import metrics

if TYPE_CHECKING:
    from gateway.admission import KeyedLimiter

log = logging.getLogger("coordinator.rate_counts")

TTL = 30  # seconds a counter outlives its last increment


class RateCounts:
    def __init__(self, conn, cluster: str, interval: float) -> None:
        self.conn = conn
        self.prefix = f"skein:{cluster}:rl:"
        self.interval = interval
        self.limiters: dict[str, KeyedLimiter] = {}  # gateway.admission limiters (duck-typed here)
        self._greenlet: gevent.Greenlet | None = None
        self._failing = False

    def add(self, name: str, limiter: KeyedLimiter) -> KeyedLimiter:
        if limiter.enabled:
            self.limiters[name] = limiter
        return limiter

    def start(self) -> None:
        if self.limiters:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.sync()
            except Exception:
                log.exception("rate count sync failed")

    def sync(self) -> int:
        """One round trip: add local counts, charge remote ones. Returns the keys synced."""
        now = time.monotonic()
        batches = [(name, lim, lim.to_sync(now)) for name, lim in self.limiters.items()]
        batches = [b for b in batches if b[2]]
        if not self.conn.up:
            self._down(None)
            return 0
        if not batches:
            return 0
        try:
            pipe = self.conn.client.pipeline(transaction=False)
            for name, _lim, items in batches:
                for key, n in items:
                    k = f"{self.prefix}{name}:{key}"
                    pipe.incrby(k, n)
                    pipe.expire(k, TTL)
            replies = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._down(exc)
            return 0
        if self._failing:
            self._failing = False
            log.info("rate limits count across nodes again (Redis answers)")
        i = 0
        n = 0
        for _name, lim, items in batches:
            totals = [int(replies[i + 2 * j]) for j in range(len(items))]
            i += 2 * len(items)
            lim.apply_totals(now, items, totals)
            n += len(items)
        metrics.rate_sync.labels("ok").inc()
        return n

    def _down(self, exc: Exception | None) -> None:
        if not self._failing or exc is not None:
            metrics.rate_sync.labels("redis_down").inc()
        for lim in self.limiters.values():
            lim.forget_synced()
        if not self._failing:
            self._failing = True
            log.warning("rate limits fall back to per-node counts: Redis unavailable (%s)", exc or "down")
