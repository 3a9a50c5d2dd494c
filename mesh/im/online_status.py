"""``user.onlinestatus`` with cluster-wide counts: each connect and disconnect goes to the uid's slot leader.

The gateway's node queues every login and logout of its sessions (only while the
webhook wants ``user.onlinestatus``); a greenlet sends them, grouped by slot, to the
slots' leaders (slot call ``USER_ONLINE``; the batches of different slots at once, a
uid's events in order). The leader updates its ``OnlineCounts`` (seeding a uid it does
not know yet from Redis presence) and answers each event's (device flag count, total
count) over the cluster; this node then queues the webhook event
``uid-flag-online-conn-flagCount-total``, as in WuKongIM. When the slot has no leader
for the call's whole timeout, the event goes out with this node's own counts and a log
line says so.
"""
from __future__ import annotations

import logging
import time

import gevent
import gevent.event
import redis

from mesh.im.online_counts import OnlineCounts
from mesh.net import wire
from mesh.slots.router import SlotCallError, SlotUnavailable

log = logging.getLogger("mesh.im.online_status")

CALL_TIMEOUT = 5.0  # seconds one batch may wait for its slot's leader
FORGET_INTERVAL = 60.0  # seconds between sweeps of uids with no connection left


class OnlineStatus:
    def __init__(self, node) -> None:
        self.node = node
        self.counts = OnlineCounts()
        self._queue: list[tuple[str, int, bool, int, int, int]] = []
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._swept = time.monotonic()

    def register(self, service) -> None:
        service.register(wire.USER_ONLINE, self._on_call)

    def start(self) -> None:
        if self.node.webhooks.wants("user.onlinestatus"):
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def changed(self, uid: str, device_flag: int, online: bool, conn_id: int, local_flag_count: int,
                local_total: int) -> None:
        """A local session logged in or out (local counts are the fallback)."""
        if self._greenlet is None:
            return
        self._queue.append((uid, device_flag, online, conn_id, local_flag_count, local_total))
        self._wake.set()

    # ------------------------------------------------------------------ this node's sessions
    def _loop(self) -> None:
        while True:
            self._wake.wait(timeout=FORGET_INTERVAL)
            self._wake.clear()
            self._sweep()
            if not self._queue:
                continue
            batch, self._queue = self._queue, []
            by_slot: dict[int, list] = {}
            for item in batch:
                by_slot.setdefault(self.node.router.slot_of(item[0]), []).append(item)
            gevent.joinall([gevent.spawn(self._send, slot, items) for slot, items in by_slot.items()])

    def _send(self, slot: int, items: list) -> None:
        events = [[uid, self.node.node_id, conn, flag, 1 if online else 0] for uid, flag, online, conn, _f, _t in items]
        try:
            counts = self.node.router.call_slot(slot, wire.USER_ONLINE, events, timeout=CALL_TIMEOUT)
        except (SlotUnavailable, SlotCallError) as exc:
            log.warning("user.onlinestatus of %d event(s) sent with this node's counts only: slot %d: %s",
                        len(items), slot, exc)
            counts = [[f, t] for _u, _fl, _on, _c, f, t in items]
        for (uid, flag, online, conn, _f, _t), (flag_count, total) in zip(items, counts):
            self.node.webhooks.online_changed(uid, flag, online, conn, flag_count, total)

    def _sweep(self) -> None:
        if time.monotonic() - self._swept < FORGET_INTERVAL:
            return
        self._swept = time.monotonic()
        for slot in range(self.node.router.slot_count):
            self.counts.forget_empty(slot)

    # ------------------------------------------------------------------ slot leader
    def _on_call(self, svc, slot: int, events: list) -> list:
        term = svc.replica(slot).term  # refused (and retried by the caller) unless this node serves the slot
        view = self.node.view
        alive = set(view.members) if view is not None else None
        out = []
        for uid, node, conn, flag, online in events:
            if self.counts.needs_seed(slot, term, uid):
                try:
                    conns = self.node.presence.lookup([uid]).get(uid, [])
                except (redis.RedisError, OSError) as exc:
                    log.warning("online count of uid=%s starts from nothing: presence unavailable (%s)", uid, exc)
                    conns = []
                self.counts.seed(slot, term, uid, [(n, c, f) for n, c, f, _level in conns])
            out.append(list(self.counts.apply(slot, term, uid, node, conn, flag, bool(online), alive)))
        return out
