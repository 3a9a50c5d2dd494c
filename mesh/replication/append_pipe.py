"""Coalesces the replication appends of many slots to one peer into one mesh request.

Every slot a node leads has its own sender per follower, and each sender has one
``repl.append`` in flight at a time. Sent one by one, a node leading many slots
would send one mesh request per slot per peer for every burst of messages, and
the follower would answer each separately. ``AppendPipes.call(peer, req)`` queues
the request instead; a loop per peer takes everything queued in one hub turn and
sends it as one ``repl.append_many`` (several batches may be in flight, so no slot
waits for another's reply). The follower runs the appends concurrently, so all of
them share one group commit of its store, and answers with one reply listing each
slot's result or refusal. Per slot the semantics are those of ``repl.append``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from mesh.net import wire
from mesh.net.transport import MeshError, Refused, RemoteError, RequestTimeout

MAX_BATCH = 256


class _Pipe:
    __slots__ = ("queue", "event", "greenlet")

    def __init__(self) -> None:
        self.queue: list[tuple[list, gevent.event.AsyncResult]] = []
        self.event = gevent.event.Event()
        self.greenlet: gevent.Greenlet | None = None


class AppendPipes:
    def __init__(self, request: Callable[..., Any], method: str = wire.REPL_APPEND_MANY) -> None:
        self._request = request
        self._method = method
        self._pipes: dict[int, _Pipe] = {}

    def call(self, peer: int, req: list, timeout: float) -> Any:
        """Send one slot's append request to ``peer`` (coalesced) and return its reply."""
        pipe = self._pipes.get(peer)
        if pipe is None:
            pipe = self._pipes[peer] = _Pipe()
        if pipe.greenlet is None or pipe.greenlet.dead:
            pipe.greenlet = gevent.spawn(self._loop, peer, pipe, timeout)
        ar: gevent.event.AsyncResult = gevent.event.AsyncResult()
        pipe.queue.append((req, ar))
        pipe.event.set()
        try:
            return ar.get(timeout=timeout + 0.5)
        except gevent.Timeout:
            raise RequestTimeout(f"coalesced append to node {peer} timed out") from None

    def _loop(self, peer: int, pipe: _Pipe, timeout: float) -> None:
        while True:
            pipe.event.wait()
            pipe.event.clear()
            gevent.sleep(0)  # let the other slots' senders of this hub turn join
            while pipe.queue:
                batch, pipe.queue = pipe.queue[:MAX_BATCH], pipe.queue[MAX_BATCH:]
                gevent.spawn(self._send, peer, batch, timeout)

    def _send(self, peer: int, batch: list[tuple[list, gevent.event.AsyncResult]], timeout: float) -> None:
        try:
            replies = self._request(peer, self._method, [req for req, _ar in batch], timeout=timeout)
        except MeshError as exc:
            for _req, ar in batch:
                ar.set_exception(exc)
            return
        for (_req, ar), reply in zip(batch, replies):
            if isinstance(reply, dict):
                ar.set(reply)
            else:  # [code, detail] of a refusal or failure of this slot's append
                ar.set_exception(RemoteError(reply[0], reply[1]))


def serve_many(one: Callable[[int, list], Any], sender: int, reqs: list) -> list:
    """Run ``one(sender, req)`` for every request concurrently; each reply, or [code, detail]."""
    def run(req: list) -> Any:
        try:
            return one(sender, req)
        except Refused as exc:
            return [exc.code, exc.detail]
        except Exception as exc:  # noqa: BLE001 - reported to the leader like repl.append's errors
            return ["error", f"{type(exc).__name__}: {exc}"]
    if len(reqs) == 1:  # the common case at low rates: this request's greenlet serves it
        return [run(reqs[0])]
    jobs = [gevent.spawn(run, req) for req in reqs]
    gevent.joinall(jobs)
    return [j.value for j in jobs]
