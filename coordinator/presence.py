"""Presence in Redis: which uid is connected where, with which device.

Keys (prefix ``skein:<cluster>:``):

* ``pres:<uid>`` hash: field ``<node>:<conn>`` -> ``<device_flag>:<device_level>:<since>``
* ``node:<node>`` set: ``<uid>\\t<conn>`` of every connection of that node

Writes are queued by the gateway (connect, close) and flushed in one pipeline every
few milliseconds. When a node dies, ``purge_node`` removes its entries (the
controller does it; every node also purges its own id when it starts). When Redis
comes back after an outage, the node writes all its current sessions again. Presence
is soft state: losing Redis loses no message.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import gevent
import gevent.event
import redis

log = logging.getLogger("coordinator.presence")


class Presence:
    def __init__(self, conn, cluster: str, node_id: int, snapshot: Callable[[], Iterable[tuple]] | None = None) -> None:
        self.conn = conn  # coordinator.redis_client.RedisConn
        self.prefix = f"skein:{cluster}:"
        self.node_id = node_id
        self.snapshot = snapshot  # () -> iterable of (uid, conn_id, device_flag, device_level, since)
        self._ops: list[tuple] = []
        self._event = gevent.event.Event()
        self._dirty = False
        self._greenlet: gevent.Greenlet | None = None

    def ukey(self, uid: str) -> str:
        return f"{self.prefix}pres:{uid}"

    def nkey(self, node: int) -> str:
        return f"{self.prefix}node:{node}"

    def start(self) -> None:
        try:
            self.purge_node(self.node_id)
        except redis.RedisError as exc:
            log.warning("could not purge this node's old presence: %s", exc)
            self._dirty = True
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def online(self, uid: str, conn: int, device_flag: int, level: int) -> None:
        self._ops.append((True, uid, conn, device_flag, level, int(time.time())))
        self._event.set()

    def offline(self, uid: str, conn: int) -> None:
        self._ops.append((False, uid, conn, 0, 0, 0))
        self._event.set()

    def _loop(self) -> None:
        while True:
            self._event.wait(timeout=2.0)
            self._event.clear()
            gevent.sleep(0.005)
            if self._dirty:
                if not self._resync():
                    gevent.sleep(1.0)
                    continue
            if not self._ops:
                continue
            ops, self._ops = self._ops, []
            try:
                pipe = self.conn.client.pipeline(transaction=False)
                nkey = self.nkey(self.node_id)
                for on, uid, conn, flag, level, since in ops:
                    field = f"{self.node_id}:{conn}"
                    if on:
                        pipe.hset(self.ukey(uid), field, f"{flag}:{level}:{since}")
                        pipe.sadd(nkey, f"{uid}\t{conn}")
                    else:
                        pipe.hdel(self.ukey(uid), field)
                        pipe.srem(nkey, f"{uid}\t{conn}")
                pipe.execute()
            except (redis.RedisError, OSError) as exc:
                log.warning("presence update of %d change(s) failed (%s); will rewrite all when Redis is back",
                            len(ops), exc)
                self._dirty = True

    def _resync(self) -> bool:
        """Rewrite every local session after a Redis outage."""
        if self.snapshot is None:
            self._dirty = False
            return True
        try:
            self.purge_node(self.node_id)
            pipe = self.conn.client.pipeline(transaction=False)
            nkey = self.nkey(self.node_id)
            n = 0
            for uid, conn, flag, level, since in self.snapshot():
                pipe.hset(self.ukey(uid), f"{self.node_id}:{conn}", f"{flag}:{level}:{since}")
                pipe.sadd(nkey, f"{uid}\t{conn}")
                n += 1
            pipe.execute()
            self._ops = []
            self._dirty = False
            log.info("presence rewritten after a Redis outage: %d connection(s)", n)
            return True
        except (redis.RedisError, OSError):
            return False

    def purge_node(self, node: int) -> int:
        """Remove every presence entry of ``node`` (it died or restarted)."""
        c = self.conn.client
        members = c.smembers(self.nkey(node))
        if members:
            pipe = c.pipeline(transaction=False)
            for m in members:
                uid, _, conn = m.decode().partition("\t")
                pipe.hdel(self.ukey(uid), f"{node}:{conn}")
            pipe.delete(self.nkey(node))
            pipe.execute()
        return len(members)

    def lookup(self, uids: Iterable[str]) -> dict[str, list[tuple[int, int, int, int]]]:
        """uid -> [(node, conn, device_flag, device_level), ...] for the connected ones."""
        uids = list(uids)
        if not uids:
            return {}
        pipe = self.conn.client.pipeline(transaction=False)
        for uid in uids:
            pipe.hgetall(self.ukey(uid))
        out: dict[str, list[tuple[int, int, int, int]]] = {}
        for uid, h in zip(uids, pipe.execute()):
            conns = []
            for field, value in h.items():
                node, _, conn = field.decode().partition(":")
                flag, level, _since = (value.decode().split(":") + ["0", "0", "0"])[:3]
                conns.append((int(node), int(conn), int(flag), int(level)))
            if conns:
                out[uid] = conns
        return out
