"""A greenlet that runs a function whenever it is woken, coalescing bursts of wake-ups.

Used for work driven by watches (the controller's table pass, slot reports): many
etcd events in a row cause one pass; a pass also runs every ``interval`` seconds, and
after a failure it is retried shortly, with one log line per failure.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.event


class TransientError(Exception):
    """A failure expected to pass by itself (a store or service briefly unreachable).

    A ``WakeLoop`` logs it in one line, without a traceback, and retries shortly.
    """


class WakeLoop:
    def __init__(self, name: str, fn: Callable[[], None], *, interval: float = 2.0, settle: float = 0.0,
                 logger: logging.Logger | None = None) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self.settle = settle
        self.log = logger or logging.getLogger("mesh.base.wake_loop")
        self._event = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def wake(self, *_args) -> None:
        self._event.set()

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)
        self._event.set()

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _run(self) -> None:
        while True:
            self._event.wait(timeout=self.interval)
            self._event.clear()
            if self.settle:
                gevent.sleep(self.settle)
            try:
                self.fn()
            except gevent.GreenletExit:
                raise
            except TransientError as exc:
                self.log.warning("%s failed: %s", self.name, exc)
                gevent.sleep(0.5)
                self._event.set()
            except Exception:
                self.log.exception("%s failed", self.name)
                gevent.sleep(0.5)
                self._event.set()
