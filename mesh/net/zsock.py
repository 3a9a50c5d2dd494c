"""Plain ZeroMQ sockets driven from gevent without ``zmq.green`` (the "hybrid" mode).

Owns the rules for using a plain pyzmq socket in a gevent process:

* Sends are NOBLOCK only; a plain blocking call would stop the whole hub.
* A socket has at most one receiving greenlet, a :class:`Receiver`. It drains what is
  queued with NOBLOCK receives while ``EVENTS`` shows POLLIN, and waits on the
  socket's ``FD`` only when nothing is queued.
* The ``FD`` is edge-triggered: any call on the socket (a send from another greenlet,
  a connect) may consume its signal while leaving messages queued. So whoever makes
  such a call on a socket with a receiver calls :meth:`Receiver.poke`, which re-checks
  ``EVENTS`` and wakes the receiver itself; a guard timer bounds any wake still missed.

``zmq.green`` does the same per call, through Python wrappers, an extra ``EVENTS``
read, a ``zmq.Again`` raised and caught and enum arithmetic for every receive; here
those are paid once per wake-up instead (``../shared/reference/dependencies.md`` §4).
"""
from __future__ import annotations

from typing import Any

import gevent
import zmq
from gevent.hub import Waiter, get_hub

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_READ = 1  # libev's EV_READ

GUARD = 0.25  # seconds a receiver sleeps at most between looks at EVENTS
BATCH = 256  # messages taken per wake-up before the receiver lets others run


class Receiver:
    """The one receiving side of a plain ZeroMQ socket inside gevent."""

    def __init__(self, sock: zmq.Socket, *, multipart: bool = False, batch: int = BATCH) -> None:
        self.sock = sock
        self.multipart = multipart
        self.batch = batch
        loop = get_hub().loop
        self._io = loop.io(sock.get(int(zmq.FD)), _READ)
        self._guard = loop.timer(GUARD, GUARD)  # started with again(): start() reuses a spent delay
        self._waiter: Waiter | None = None
        self._full = False

    def recv_many(self) -> list[Any]:
        """Block this greenlet until at least one message is queued; return up to ``batch``.

        Raises ``zmq.ZMQError`` when the socket is closed under it.
        """
        if self._full:  # the last call took a whole batch: let other greenlets run first
            gevent.sleep(0)
        sock = self.sock
        recv = sock.recv_multipart if self.multipart else sock.recv
        while True:
            out: list[Any] = []
            try:
                while len(out) < self.batch and sock.get(_EVENTS) & _POLLIN:
                    out.append(recv(_NOBLOCK))
            except zmq.Again:
                pass
            if out:
                self._full = len(out) == self.batch
                return out
            self._wait()

    def _wait(self) -> None:
        waiter = Waiter()
        self._waiter = waiter
        self._io.start(waiter.switch, None)
        self._guard.again(waiter.switch, None)
        try:
            waiter.get()
        finally:
            self._io.stop()
            self._guard.stop()
            self._waiter = None

    def poke(self) -> None:
        """After another call on this socket: wake the receiver if a message is queued."""
        waiter = self._waiter
        if waiter is None:
            return
        try:
            ready = self.sock.get(_EVENTS) & _POLLIN
        except zmq.ZMQError:  # closed: the receiver finds out itself
            ready = True
        if ready:
            get_hub().loop.run_callback(waiter.switch, None)

    def close(self) -> None:
        """Close the watchers and the socket (its receiving greenlet is killed first)."""
        self._io.close()
        self._guard.close()
        self.sock.close(linger=0)
