"""``/message/sendbatch`` as a durable, queued fan-out.

The HTTP call only validates and appends the batch to the Redis stream
``skein:<cluster>:sendbatch`` (``XADD``), then answers: a large batch never holds the
request open. Every node consumes the stream through one consumer group and sends
each batch's person messages ``from_uid -> subscriber`` in order (``CONCURRENCY`` in
flight) through the normal write path, as system sends (WuKongIM's HTTP sends skip
the sender checks). An entry is acknowledged and deleted once all its messages are
durable. While a node works on a batch it keeps the entry claimed; entries a dead
node had taken are claimed by the others after ``CLAIM_IDLE`` seconds and sent again
from the start. Each message's ``client_msg_no`` is ``<batch id>-<index>``, so the
channel's dedupe turns those resends into no-ops: what was accepted is sent once,
even if the accepting or the sending node dies. A message that cannot be sent after
``MAX_ATTEMPTS`` (no slot leader for that long) is logged and counted; the rest of
the batch goes on.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

import gevent
import gevent.pool
import redis

from gateway import wkproto as wk
from gateway.ports import SendRequest
from mesh.base import metrics
from mesh.im.channel_rules import PERSON

log = logging.getLogger("mesh.im.send_batches")

GROUP = "skein-sendbatch"
CLAIM_IDLE = 10.0  # seconds an entry may sit with a silent consumer before another node takes it
CONCURRENCY = 64  # sends of one batch in flight
MAX_ATTEMPTS = 5  # per message, while its slot has no leader
MAX_STREAM = 1_000_000


def client_msg_no(batch_id: str, index: int) -> str:
    """The ``client_msg_no`` of a batch's ``index``-th message: the same on every resend."""
    return f"{batch_id}-{index}"


class SendBatches:
    def __init__(self, node) -> None:
        self.node = node
        self.stream = f"skein:{node.cfg['cluster.name']}:sendbatch"
        self.consumer = f"node-{node.node_id}"
        self._greenlet: gevent.Greenlet | None = None

    # ------------------------------------------------------------------ producing
    def enqueue(self, from_uid: str, subscribers: list[str], payload: bytes, flags: int) -> str:
        """Append a batch (raises ``redis.RedisError`` if it could not be stored); returns its id."""
        batch_id = uuid.uuid4().hex
        self.node.redis.client.xadd(self.stream, {"batch": batch_id, "from": from_uid, "flags": str(flags),
                                                  "subs": json.dumps(subscribers), "payload": payload},
                                    maxlen=MAX_STREAM, approximate=True)
        metrics.sendbatch_queued.inc(len(subscribers))
        log.info("sendbatch %s queued: %d message(s) from %s", batch_id, len(subscribers), from_uid)
        return batch_id

    # ------------------------------------------------------------------ consuming
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._consume_loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _ensure_group(self, r) -> None:
        try:
            r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
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
                    self._ensure_group(r)
                entries = []
                if time.monotonic() - last_claim > CLAIM_IDLE / 3:
                    last_claim = time.monotonic()
                    claimed = r.xautoclaim(self.stream, GROUP, self.consumer, int(CLAIM_IDLE * 1000), "0-0", count=1)
                    entries = claimed[1] if claimed else []
                    if entries:
                        log.info("sendbatch entry %s claimed from a silent node", entries[0][0])
                if not entries:
                    got = r.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=1, block=1000)
                    entries = got[0][1] if got else []
                for eid, fields in entries:
                    if fields:  # a claimed entry deleted meanwhile comes back empty
                        self._process(r, eid, fields)
                    r.xack(self.stream, GROUP, eid)
                    r.xdel(self.stream, eid)
            except gevent.GreenletExit:
                raise
            except (redis.RedisError, OSError) as exc:
                log.warning("sendbatch queue unavailable: %s", exc)
                r = None
                gevent.sleep(1.0)
            except Exception:
                log.exception("sendbatch consumer failed")
                gevent.sleep(1.0)

    def _process(self, r, eid, fields: dict) -> None:
        batch_id = fields[b"batch"].decode()
        from_uid = fields[b"from"].decode()
        flags = int(fields.get(b"flags", b"0"))
        payload = fields[b"payload"]
        subs = json.loads(fields[b"subs"])
        started = time.monotonic()
        last_touch = started
        failed = 0

        def one(i: int, uid: str) -> bool:
            req = SendRequest(from_uid, uid, PERSON, payload, client_msg_no(batch_id, i), 0, flags)
            for attempt in range(MAX_ATTEMPTS):
                res = self.node.messages.send_sync(req, system=True)
                if res.reason != wk.REASON_SYSTEM_ERROR:
                    if res.reason != wk.REASON_SUCCESS:
                        log.info("sendbatch %s: message to %s refused (reason %d)", batch_id, uid, res.reason)
                    return res.reason == wk.REASON_SUCCESS
                gevent.sleep(min(0.5 * 2 ** attempt, 5.0))
            log.error("sendbatch %s: message to %s not sent after %d attempts (no slot leader)", batch_id, uid,
                      MAX_ATTEMPTS)
            return False

        pool = gevent.pool.Pool(CONCURRENCY)
        jobs = []
        for i, uid in enumerate(subs):
            jobs.append(pool.spawn(one, i, uid))
            if time.monotonic() - last_touch > CLAIM_IDLE / 3:  # still ours: keep the entry claimed
                r.xclaim(self.stream, GROUP, self.consumer, 0, [eid], justid=True)
                last_touch = time.monotonic()
        while len(gevent.joinall(jobs, timeout=CLAIM_IDLE / 3)) < len(jobs):
            r.xclaim(self.stream, GROUP, self.consumer, 0, [eid], justid=True)
        for j in jobs:
            if not j.successful() or not j.value:
                failed += 1
        metrics.sendbatch_sent.inc(len(subs) - failed)
        if failed:
            metrics.sendbatch_failed.inc(failed)
        log.info("sendbatch %s done: %d sent, %d not sent, %.2fs", batch_id, len(subs) - failed, failed,
                 time.monotonic() - started)
