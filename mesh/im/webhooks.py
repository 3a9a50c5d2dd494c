"""Webhooks: ``msg.notify``, ``msg.offline`` and ``user.onlinestatus``, queued in Redis.

Events are added to the Redis stream ``skein:<cluster>:webhook`` (``XADD``, pipelined
in batches) by the node where they happen: the slot leader for a committed message,
the gateway's node for a login or logout. Every node consumes the stream through one
consumer group, so a queued event is POSTed once by some node; entries a dead node
had taken are claimed by the others after ``CLAIM_IDLE`` seconds, so a node's death
loses none. A POST goes to ``{webhook.httpAddr}?event=<name>`` with the bare body
(``msg.notify``: an array of up to ``msgNotifyEventCountPerPush`` MessageResp;
``user.onlinestatus``: an array of ``uid-flag-online-conn-flagCount-total`` strings;
``msg.offline``: one MessageResp plus ``to_uids`` and ``source_id``) and counts as
delivered only on HTTP 200. Failures are retried with exponential backoff up to
``msgNotifyEventRetryMaxCount`` attempts, then moved to ``...:webhook:dead`` with a
log line.
"""
from __future__ import annotations

import json
import logging
import time

import gevent
import gevent.event
import redis
import requests

from mesh.base import metrics
from mesh.im.channel_rules import PERSON, SYSTEM_UID, person_peer
from mesh.im.messages import message_resp
from mesh.storage.entries import M_CHANNEL, M_CTYPE, M_FLAGS, M_FROM

log = logging.getLogger("mesh.im.webhooks")

GROUP = "skein-webhooks"
CLAIM_IDLE = 30.0
MAX_STREAM = 1_000_000


class Webhooks:
    def __init__(self, node) -> None:
        cfg = node.cfg
        self.node = node
        self.url = cfg["webhook.httpAddr"]
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
            self._event.wait()
            self._event.clear()
            gevent.sleep(0.02)
            msgs, self._msgs = self._msgs, []
            events, self._queue = self._queue, []
            try:
                if msgs:
                    events.extend(self._message_events(msgs))
                if events:
                    pipe = self.node.redis.client.pipeline(transaction=False)
                    for name, body in events:
                        pipe.xadd(self.stream, {"event": name, "body": body}, maxlen=MAX_STREAM, approximate=True)
                    pipe.execute()
                    metrics.webhook_queued.inc(len(events))
            except (redis.RedisError, OSError) as exc:
                metrics.webhook_failures.labels("queue").inc(len(events))
                log.error("could not queue %d webhook event(s) in Redis: %s", len(events), exc)

    def _message_events(self, msgs: list) -> list[tuple[str, str]]:
        out = []
        offline_wanted = self.wants("msg.offline")
        uids = {u for _d, rcpts in msgs for u in rcpts} if offline_wanted else set()
        online = self.node.presence.lookup(uids) if uids else {}
        for data, recipients in msgs:
            resp = message_resp(data)
            if self.wants("msg.notify") and not data[M_FLAGS] & 0x01:
                out.append(("msg.notify", json.dumps(resp)))
            if offline_wanted:
                sender = data[M_FROM]
                to = [u for u in recipients if u != sender and u != SYSTEM_UID
                      and not any(level == 1 for _n, _c, _f, level in online.get(u, ()))]
                if to:
                    body = dict(resp)
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
            if name in ("msg.notify", "user.onlinestatus"):
                for i in range(0, len(items), self.batch):
                    chunk = items[i:i + self.batch]
                    if name == "msg.notify":
                        body = "[" + ",".join(b.decode() for _e, b in chunk) + "]"
                    else:
                        body = json.dumps([b.decode() for _e, b in chunk])
                    self._post_and_ack(r, name, body, [e for e, _b in chunk])
            else:
                for eid, b in items:
                    self._post_and_ack(r, name, b.decode(), [eid])

    def _post_and_ack(self, r, event: str, body: str, ids: list) -> None:
        delay = 0.2
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self.http.post(self.url, params={"event": event}, data=body.encode(),
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

