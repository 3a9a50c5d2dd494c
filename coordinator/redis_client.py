"""The Redis connection (soft state only) and its health flag.

Redis holds presence, the webhook queue, rate limits and caches; losing it loses no
message or channel. ``RedisConn`` builds the client from ``redis.url`` (password and
TLS CA passed through from config) and pings it in the background, so ``/health``
and the ``skein_redis_up`` gauge know whether it answers.
"""
from __future__ import annotations

import logging

import gevent
import redis

from mesh.base import metrics

log = logging.getLogger("coordinator.redis")


class RedisConn:
    def __init__(self, url: str, *, password: str = "", ca_file: str = "", timeout: float = 2.0,
                 check_interval: float = 1.0) -> None:
        kwargs: dict = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                        "health_check_interval": 30, "max_connections": 256}
        if password:
            kwargs["password"] = password
        if ca_file and url.startswith("rediss://"):
            kwargs["ssl_ca_certs"] = ca_file
        self.client = redis.Redis.from_url(url, **kwargs)
        self.check_interval = check_interval
        self.up = False
        self.last_error = ""
        self._greenlet: gevent.Greenlet | None = None

    def check(self) -> bool:
        try:
            self.client.ping()
            if not self.up:
                log.info("redis reachable")
            self.up = True
            self.last_error = ""
        except (redis.RedisError, OSError) as exc:
            if self.up or not self.last_error:
                log.error("redis unreachable: %s", exc)
            self.up = False
            self.last_error = str(exc)
        metrics.redis_up.set(1 if self.up else 0)
        return self.up

    def start(self) -> None:
        self.check()
        self._greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.check_interval)
            self.check()

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        try:
            self.client.close()
        except Exception:
            pass
