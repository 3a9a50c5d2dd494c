"""Presence in Redis: which uid is connected where, with which device.

Keys (prefix ``skein:<cluster>:``):

* ``pres:<uid>`` hash: field ``<node>:<conn>`` -> ``<device_flag>:<device_level>:<since>``
* ``node:<node>`` set: ``<uid>\\t<conn>`` of every connection of that node
* ``mark:<node>``: present while that node's presence is complete in Redis

Writes are queued by the gateway (connect, close) and flushed in one pipeline every
few milliseconds. When a node dies, ``purge_node`` removes its entries (the
controller does it; every node also purges its own id when it starts). When Redis
comes back after an outage, the node writes all its current sessions again. A node
also checks its mark every ``CHECK_INTERVAL``: a Redis that lost its data (FLUSHALL,
a restart without persistence) answers without it, and the node rewrites all its
sessions then too. ``lookup_complete`` tells a reader whether every given node's mark
is there, i.e. whether "not in presence" really means offline. Presence is soft
state: losing Redis loses no message.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import gevent
import gevent.event
import redis

log = logging.getLogger("coordinator.presence")

CHECK_INTERVAL = 1.0  # seconds between checks that this node's presence is still in Redis


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
        self._checked_at = 0.0
        self.rewrites = 0  # times all local sessions were rewritten (after an outage or a flush)

    def ukey(self, uid: str) -> str:
        return f"{self.prefix}pres:{uid}"

    def nkey(self, node: int) -> str:
        return f"{self.prefix}node:{node}"

    def mkey(self, node: int) -> str:
        return f"{self.prefix}mark:{node}"

    def start(self) -> None:
        try:
            self.purge_node(self.node_id)
            self.conn.client.set(self.mkey(self.node_id), str(int(time.time())))
        except (redis.RedisError, OSError) as exc:
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
            self._event.wait(timeout=CHECK_INTERVAL)
            self._event.clear()
            gevent.sleep(0.005)
            if not self._dirty and time.monotonic() - self._checked_at >= CHECK_INTERVAL:
                self._check_mark()
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

    def _check_mark(self) -> None:
        """A Redis that answers without this node's mark lost its data: rewrite everything."""
        self._checked_at = time.monotonic()
        try:
            if self.conn.client.exists(self.mkey(self.node_id)):
                return
            log.warning("this node's presence is gone from Redis (flushed or restarted); rewriting it")
        except (redis.RedisError, OSError) as exc:
            log.warning("presence check failed (%s); will rewrite all when Redis is back", exc)
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
            self._ops = []  # the snapshot below already has their effect
            for uid, conn, flag, level, since in self.snapshot():
                pipe.hset(self.ukey(uid), f"{self.node_id}:{conn}", f"{flag}:{level}:{since}")
                pipe.sadd(nkey, f"{uid}\t{conn}")
                n += 1
            pipe.set(self.mkey(self.node_id), str(int(time.time())))
            pipe.execute()
            self._dirty = False
            self._checked_at = time.monotonic()
            self.rewrites += 1
            log.info("presence rewritten after a Redis outage or flush: %d connection(s)", n)
            return True
        except (redis.RedisError, OSError):
            return False

    def purge_node(self, node: int) -> int:
        """Remove every presence entry of ``node`` (it died or restarted)."""
        c = self.conn.client
        members = c.smembers(self.nkey(node))
        pipe = c.pipeline(transaction=False)
        for m in members:
            uid, _, conn = m.decode().partition("\t")
            pipe.hdel(self.ukey(uid), f"{node}:{conn}")
        pipe.delete(self.nkey(node), self.mkey(node))
        pipe.execute()
        return len(members)

    def lookup(self, uids: Iterable[str]) -> dict[str, list[tuple[int, int, int, int]]]:
        """uid -> [(node, conn, device_flag, device_level), ...] for the connected ones."""
        return self.lookup_complete(uids, ())[0]

    def lookup_complete(self, uids: Iterable[str],
                        nodes: Iterable[int]) -> tuple[dict[str, list[tuple[int, int, int, int]]], list[int]]:
        """``lookup(uids)`` and, read in the same round trip, which of ``nodes`` have no mark
        (their presence is not, or not yet again, in Redis)."""
        uids = list(uids)
        nodes = list(nodes)
        if not uids and not nodes:
            return {}, []
        pipe = self.conn.client.pipeline(transaction=False)
        for n in nodes:
            pipe.exists(self.mkey(n))
        for uid in uids:
            pipe.hgetall(self.ukey(uid))
        got = pipe.execute()
        unmarked = [n for n, ok in zip(nodes, got) if not ok]
        out: dict[str, list[tuple[int, int, int, int]]] = {}
        for uid, h in zip(uids, got[len(nodes):]):
            conns = []
            for field, value in h.items():
                node, _, conn = field.decode().partition(":")
                flag, level, _since = (value.decode().split(":") + ["0", "0", "0"])[:3]
                conns.append((int(node), int(conn), int(flag), int(level)))
            if conns:
                out[uid] = conns
        return out, unmarked
