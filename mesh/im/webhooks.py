"""Webhooks: ``msg.notify``, ``msg.offline`` and ``user.onlinestatus``, queued in Redis.

Events are added to the Redis stream ``skein:<cluster>:webhook`` (``XADD``, pipelined
in batches) by the node where they happen: the slot leader for a committed message,
the gateway's node for a login or logout. Every node consumes the stream through one
consumer group, so a queued event is POSTed once by some node; entries a dead node
had taken are claimed by the others after ``CLAIM_IDLE`` seconds, so a node's death
loses none. A POST goes to ``{webhook.httpAddr}?event=<name>`` with the bare body
(``msg.notify``: an array of up to ``msgNotifyEventCountPerPush`` MessageResp;
``user.onlinestatus``: an array of ``uid-flag-online-conn-flagCount-total`` strings;
``msg.offline``: one MessageResp plus ``to_uids`` and ``source_id``; ``msg.notify`` of
agent chats (type 11) goes to ``agent.webhook.httpAddr`` instead when that is set, and
agent chats never get ``msg.offline``, as in WuKongIM) and counts as
delivered only on HTTP 200. Failures are retried with exponential backoff up to
``msgNotifyEventRetryMaxCount`` attempts, then moved to ``...:webhook:dead`` with a
log line.

While Redis is down, events wait in a local queue (at most ``LOCAL_QUEUE_MAX``; the
oldest are dropped beyond it, counted and logged) and are added, in order, when it
answers again. ``msg.offline`` needs presence: while some live node's presence is
missing from Redis (a flush or a restart it has not rewritten yet, see
``coordinator.presence``), committed messages wait up to ``OFFLINE_WAIT_MAX`` seconds
rather than report online users as offline.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque

import gevent
import gevent.event
import redis
import requests

from mesh.base import metrics
from mesh.im.channel_rules import AGENT, PERSON, SYSTEM_UID, person_peer
from mesh.im.messages import message_resp
from mesh.storage.entries import M_CHANNEL, M_CTYPE, M_FLAGS, M_FROM

log = logging.getLogger("mesh.im.webhooks")

GROUP = "skein-webhooks"
CLAIM_IDLE = 30.0
MAX_STREAM = 1_000_000
LOCAL_QUEUE_MAX = 100_000  # events (and messages waiting for presence) kept here while Redis is down
OFFLINE_WAIT_MAX = 10.0  # seconds a message's msg.offline may wait for every live node's presence
QUEUE_BATCH = 1000  # events per XADD pipeline
AGENT_NOTIFY = "agent:msg.notify"  # stream name of msg.notify for agent.webhook.httpAddr


class Webhooks:
    def __init__(self, node) -> None:
        cfg = node.cfg
        self.node = node
        self.url = cfg["webhook.httpAddr"]
        self.agent_url = cfg["agent.webhook.httpAddr"]
        self.focus = set(cfg["webhook.focusEvents"])
        self.batch = cfg["webhook.msgNotifyEventCountPerPush"]
        self.interval = cfg["webhook.msgNotifyEventPushInterval"]
        self.max_attempts = cfg["webhook.msgNotifyEventRetryMaxCount"]
        self.timeout = cfg["webhook.timeout"]
        prefix = f"skein:{cfg['cluster.name']}:"
        self.stream = prefix + "webhook"
        self.dead_stream = prefix + "webhook:dead"
        self.consumer = f"node-{node.node_id}"
        self._queue: list[tuple[str, str]] = []
        self._msgs: list[tuple[list, list[str]]] = []
        self._pending: deque[tuple[str, str]] = deque()  # events not yet in Redis, oldest first
        self._held: deque[tuple[float, list, list[str]]] = deque()  # (since, data, recipients) awaiting presence
        self._queue_error = ""
        self.dropped = 0
        self._event = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self.http = requests.Session()

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def wants(self, event: str) -> bool:
        return self.enabled and (not self.focus or event in self.focus)

    def start(self) -> None:
        if not self.enabled:
            return
        self._greenlets = [gevent.spawn(self._produce_loop), gevent.spawn(self._consume_loop)]

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)

    # ------------------------------------------------------------------ producing
    def message_committed(self, data: list, recipients: list[str]) -> None:
        if self.wants("msg.notify") or self.wants("msg.offline"):
            self._msgs.append((data, recipients))
            self._event.set()

    def online_changed(self, uid: str, device_flag: int, online: bool, conn_id: int, flag_count: int,
                       total: int) -> None:
        if self.wants("user.onlinestatus"):
            self._queue.append(("user.onlinestatus",
                                f"{uid}-{device_flag}-{1 if online else 0}-{conn_id}-{flag_count}-{total}"))
            self._event.set()

    def _produce_loop(self) -> None:
        while True:
            self._event.wait(timeout=1.0 if self._pending or self._held else None)
            self._event.clear()
            gevent.sleep(0.02)
            msgs, self._msgs = self._msgs, []
            self._pending.extend(self._queue)
            self._queue = []
            try:
                if msgs or self._held:
                    self._pending.extend(self._message_events(msgs))
                self._flush_pending()
                if self._queue_error:
                    log.info("webhook queue reachable again; queued events sent to Redis")
                    self._queue_error = ""
            except (redis.RedisError, OSError) as exc:
                if not self._queue_error:
                    log.error("could not queue webhook events in Redis (%s); keeping them here until it answers", exc)
                self._queue_error = str(exc)
            self._bound()

    def _flush_pending(self) -> None:
        while self._pending:
            chunk = [self._pending[i] for i in range(min(QUEUE_BATCH, len(self._pending)))]
            pipe = self.node.redis.client.pipeline(transaction=False)
            for name, body in chunk:
                pipe.xadd(self.stream, {"event": name, "body": body}, maxlen=MAX_STREAM, approximate=True)
            pipe.execute()
            for _ in chunk:
                self._pending.popleft()
            metrics.webhook_queued.inc(len(chunk))

    def _bound(self) -> None:
        over = len(self._pending) + len(self._held) - LOCAL_QUEUE_MAX
        if over <= 0:
            return
        for _ in range(over):
            if self._held:
                self._held.popleft()
            else:
                self._pending.popleft()
        self.dropped += over
        metrics.webhook_failures.labels("dropped").inc(over)
        log.error("webhook local queue full (%d); dropped the %d oldest event(s)", LOCAL_QUEUE_MAX, over)

    def _message_events(self, msgs: list) -> list[tuple[str, str]]:
        """msg.notify of ``msgs`` (straight into the local queue); returns msg.offline of them and of
        the held ones once presence is complete (a Redis error leaves them held)."""
        out: list[tuple[str, str]] = []
        now = time.monotonic()
        for data, _recipients in msgs:
            if self.wants("msg.notify") and not data[M_FLAGS] & 0x01:
                agent = self.agent_url and data[M_CTYPE] == AGENT
                self._pending.append((AGENT_NOTIFY if agent else "msg.notify", json.dumps(message_resp(data))))
        if not self.wants("msg.offline"):
            return out
        # WuKongIM never sends msg.offline for agent chats
        self._held.extend((now, data, recipients) for data, recipients in msgs if data[M_CTYPE] != AGENT)
        if not self._held:
            return out
        uids = {u for _t, _d, rcpts in self._held for u in rcpts}
        view = self.node.view
        nodes = sorted(view.members) if view is not None else []
        online, unmarked = self.node.presence.lookup_complete(uids, nodes)
        if unmarked and now - self._held[0][0] < OFFLINE_WAIT_MAX:
            return out  # some node's presence is not back in Redis yet: offline would be a guess
        if unmarked:
            log.warning("msg.offline computed without the presence of node(s) %s (missing for %.0fs)", unmarked,
                        OFFLINE_WAIT_MAX)
        held, self._held = self._held, deque()
        for _t, data, recipients in held:
            sender = data[M_FROM]
            to = [u for u in recipients if u != sender and u != SYSTEM_UID
                  and not any(level == 1 for _n, _c, _f, level in online.get(u, ()))]
            if to:
                body = dict(message_resp(data))
                body["channel_id"] = (person_peer(data[M_CHANNEL], sender) if data[M_CTYPE] == PERSON
                                      else data[M_CHANNEL])
                body["from_uid"] = sender
                body["to_uids"] = to
                body["source_id"] = self.node.node_id
                out.append(("msg.offline", json.dumps(body)))
        return out

    # ------------------------------------------------------------------ consuming
    def _ensure_group(self) -> None:
        try:
            self.node.redis.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _consume_loop(self) -> None:
        r = None
        last_claim = 0.0
        while True:
            try:
                if r is None:
                    r = self.node.redis.client
                    self._ensure_group()
                entries = []
                if time.monotonic() - last_claim > CLAIM_IDLE / 3:
                    last_claim = time.monotonic()
                    claimed = r.xautoclaim(self.stream, GROUP, self.consumer, int(CLAIM_IDLE * 1000), "0-0",
                                           count=self.batch)
                    entries = claimed[1] if claimed else []
                if not entries:
                    got = r.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch, block=1000)
                    entries = got[0][1] if got else []
                if entries:
                    self._deliver(r, entries)
                    metrics.webhook_depth.set(r.xlen(self.stream))
                    gevent.sleep(self.interval if len(entries) < self.batch else 0)
            except gevent.GreenletExit:
                raise
            except (redis.RedisError, OSError) as exc:
                log.warning("webhook queue unavailable: %s", exc)
                r = None
                gevent.sleep(1.0)
            except Exception:
                log.exception("webhook consumer failed")
                gevent.sleep(1.0)

    def _deliver(self, r, entries: list) -> None:
        by_event: dict[str, list[tuple[bytes, bytes]]] = {}
        for eid, fields in entries:
            name = fields.get(b"event", b"").decode()
            by_event.setdefault(name, []).append((eid, fields.get(b"body", b"")))
        for name, items in by_event.items():
            if name in ("msg.notify", AGENT_NOTIFY, "user.onlinestatus"):
                for i in range(0, len(items), self.batch):
                    chunk = items[i:i + self.batch]
                    if name != "user.onlinestatus":
                        body = "[" + ",".join(b.decode() for _e, b in chunk) + "]"
                    else:
                        body = json.dumps([b.decode() for _e, b in chunk])
                    self._post_and_ack(r, name, body, [e for e, _b in chunk])
            else:
                for eid, b in items:
                    self._post_and_ack(r, name, b.decode(), [eid])

    def _post_and_ack(self, r, event: str, body: str, ids: list) -> None:
        delay = 0.2
        url = self.url
        if event == AGENT_NOTIFY:
            url, event = self.agent_url or self.url, "msg.notify"
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self.http.post(url, params={"event": event}, data=body.encode(),
                                      headers={"Content-Type": "application/json"}, timeout=self.timeout)
                if resp.status_code == 200:
                    metrics.webhook_sent.labels(event).inc()
                    r.xack(self.stream, GROUP, *ids)
                    r.xdel(self.stream, *ids)
                    return
                why = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                why = type(exc).__name__
            metrics.webhook_failures.labels(event).inc()
            if attempt < self.max_attempts:
                log.info("webhook %s attempt %d/%d failed (%s); retrying in %.1fs", event, attempt,
                         self.max_attempts, why, delay)
                gevent.sleep(delay)
                delay = min(delay * 2, 10.0)
        log.error("webhook %s given up after %d attempts (%s); moved to %s", event, self.max_attempts, why,
                  self.dead_stream)
        pipe = r.pipeline(transaction=False)
        pipe.xadd(self.dead_stream, {"event": event, "body": body, "error": why}, maxlen=100000, approximate=True)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()

