"""``/message/sendbatch`` as a durable, queued fan-out kept in the from_uid's slot log.

The HTTP call validates, then proposes the batch to the slot of its ``from_uid``
(``batch.add``: sender, subscribers, payload, flags) and answers once a majority of
the slot's replicas hold it: a large batch never holds the request open, and what was
accepted survives the accepting node's death and the loss of Redis (nothing of it is
in Redis).

The slot's serving leader does the fan-out: a loop on every node looks for queued
batches in the slots it leads and sends each batch's person messages
``from_uid -> subscriber`` in order, ``CHUNK`` at a time (concurrently within a
chunk), through the normal write path as system sends (WuKongIM's HTTP sends skip the
sender checks). After each chunk it records the progress in the slot (``batch.done``);
a finished batch leaves the slot state. When the leadership moves (failover, drain,
election) the new leader goes on from the recorded progress, so at most the chunk in
flight is sent again. Each message's ``client_msg_no`` is ``<batch id>-<index>``, so
the recipient channel's dedupe turns those resends into no-ops: each recipient gets
the message once. A message that cannot be sent after ``MAX_ATTEMPTS`` (no slot leader
for that long) is logged and counted; the rest of the batch goes on.
"""
from __future__ import annotations

import logging
import time
import uuid

import gevent
import gevent.event
import gevent.pool

from gateway import wkproto as wk
from gateway.ports import SendRequest
from mesh.base import metrics
from mesh.im.channel_rules import PERSON
from mesh.net import wire
from mesh.net.transport import MeshError, Refused
from mesh.replication.replica import NotLeader

log = logging.getLogger("mesh.im.send_batches")

CHUNK = 64  # messages of one batch in flight; progress is recorded after each chunk
MAX_ATTEMPTS = 5  # per message, while its slot has no leader
POLL = 1.0  # seconds between looks for queued batches in the slots led here (also woken by a commit)


def client_msg_no(batch_id: str, index: int) -> str:
    """The ``client_msg_no`` of a batch's ``index``-th message: the same on every resend."""
    return f"{batch_id}-{index}"


def register(service, node) -> None:
    def add(svc, slot: int, a: dict) -> int:
        n = svc.propose(slot, wire.OP_BATCH_ADD, a)
        node.send_batches.wake()  # this node leads the slot: start sending now
        return n
    service.register(wire.BATCH_ADD, add)


class SendBatches:
    def __init__(self, node) -> None:
        self.node = node
        self._greenlet: gevent.Greenlet | None = None
        self._running: dict[str, gevent.Greenlet] = {}  # batch id -> its sender on this node
        self._wake = gevent.event.Event()

    # ------------------------------------------------------------------ producing
    def enqueue(self, from_uid: str, subscribers: list[str], payload: bytes, flags: int) -> str:
        """Store a batch in the from_uid's slot (raises the router's errors if it could not); returns its id."""
        batch_id = uuid.uuid4().hex
        self.node.router.call(from_uid, wire.BATCH_ADD, {"id": batch_id, "from": from_uid, "flags": int(flags),
                                                         "subs": list(subscribers), "payload": bytes(payload)})
        metrics.sendbatch_queued.inc(len(subscribers))
        log.info("sendbatch %s queued: %d message(s) from %s", batch_id, len(subscribers), from_uid)
        return batch_id

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ sending (on the slot leader)
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        for g in list(self._running.values()):
            g.kill(block=False)

    def _loop(self) -> None:
        while True:
            self._wake.wait(timeout=POLL)
            self._wake.clear()
            try:
                self._look()
            except gevent.GreenletExit:
                raise
            except Exception:
                log.exception("sendbatch scan failed")
            gevent.sleep(0.05)

    def _look(self) -> None:
        for slot, r in list(self.node.replication.replicas.items()):
            if not r.state.batches or not r.is_serving():
                continue
            for batch_id in list(r.state.batches):
                g = self._running.get(batch_id)
                if g is None or g.dead:
                    self._running[batch_id] = gevent.spawn(self._run, slot, batch_id)

    def _run(self, slot: int, batch_id: str) -> None:
        started = time.monotonic()
        sent = failed = 0
        announced = False
        try:
            while True:
                r = self.node.replication.replicas.get(slot)
                if r is None or not r.is_serving():
                    log.info("sendbatch %s: slot %d no longer served here; its next leader goes on", batch_id, slot)
                    return
                b = r.state.batches.get(batch_id)
                if b is None:
                    break
                first = b["done"]
                chunk = b["subs"][first:first + CHUNK]
                if not announced:
                    announced = True
                    log.info("sendbatch %s: sending %d message(s) from %s, from message %d on", batch_id,
                             len(b["subs"]), b["from"], first)
                pool = gevent.pool.Pool(CHUNK)
                jobs = [pool.spawn(self._one, batch_id, b, first + i, uid) for i, uid in enumerate(chunk)]
                gevent.joinall(jobs)
                ok = sum(1 for j in jobs if j.successful() and j.value)
                sent += ok
                failed += len(chunk) - ok
                try:
                    self.node.slot_service.propose(slot, wire.OP_BATCH_DONE,
                                                   {"id": batch_id, "done": first + len(chunk)})
                except (Refused, NotLeader, MeshError) as exc:
                    log.info("sendbatch %s: progress not recorded (%s); the slot's leader goes on", batch_id, exc)
                    return
        finally:
            self._running.pop(batch_id, None)
            metrics.sendbatch_sent.inc(sent)
            if failed:
                metrics.sendbatch_failed.inc(failed)
        log.info("sendbatch %s done here: %d sent, %d not sent, %.2fs", batch_id, sent, failed,
                 time.monotonic() - started)

    def _one(self, batch_id: str, b: dict, index: int, uid: str) -> bool:
        req = SendRequest(b["from"], uid, PERSON, b["payload"], client_msg_no(batch_id, index), 0, b["flags"])
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
