"""Where the write-ahead log's group commits run: on the event loop itself, or in a worker thread.

A commit (``os.write`` and ``fdatasync`` of one batch) handed to the hub's threadpool
costs the hand-off: the worker woken, the GIL passed to it and back around each system
call, the event loop woken by the result. On a disk whose ``fdatasync`` takes a fraction
of a millisecond the hand-off costs about as much CPU as the write, and under load it
adds the worker's wait for a core and for the GIL to every acknowledgement. So while
the disk is fast the loop writes itself; the rule below keeps a slow or stalling disk
from holding the loop:

* commits are written on the loop once ``calm_needed`` commits (wherever they ran) have
  been seen since the start or since the last time it went to the threadpool;
* the moving average of the commits written on the loop (each new one weighs ``ALPHA``;
  a commit in a worker thread is timed with its waits for the GIL, so it does not
  count) must stay at most ``inline_max``: past it, the next ``hold`` seconds of commits
  go to the threadpool, and then the loop tries again (a few commits every ``hold`` on
  a disk too slow for it);
* a stall, one commit slower than ``STALL_FACTOR`` x ``inline_max`` wherever it ran (or
  a failed one), does the same at once, and is announced (the loop is blocked by a
  stalling disk at most once per hold);
* the loop spends at most ``max_share`` of each ``window`` in commits; past that, the
  rest of the window goes to the threadpool (a busy disk never takes the loop's time
  from clients and the mesh);
* ``inline_max`` 0 keeps every commit in the threadpool.

Pure: the caller passes each commit's duration and the clock (``mesh.storage.store``).
"""
from __future__ import annotations

ALPHA = 0.05
STALL_FACTOR = 10.0


class SyncPlacement:
    """Decides, commit by commit, whether the event loop writes the log itself (see the module doc)."""

    __slots__ = ("inline_max", "hold", "calm_needed", "max_share", "window", "average", "calm", "hold_until",
                 "window_start", "window_spent")

    def __init__(self, inline_max: float, *, hold: float = 5.0, calm_needed: int = 8, max_share: float = 0.25,
                 window: float = 1.0) -> None:
        self.inline_max = inline_max
        self.hold = hold
        self.calm_needed = calm_needed
        self.max_share = max_share
        self.window = window
        self.average: float | None = None  # moving average of the loop's commits since the last move to the pool
        self.calm = 0  # commits seen since the start or the last move to the pool
        self.hold_until = 0.0
        self.window_start = 0.0
        self.window_spent = 0.0  # seconds of commits on the loop in the current window

    def _roll(self, now: float) -> None:
        if now - self.window_start >= self.window:
            self.window_start = now
            self.window_spent = 0.0

    def _eligible(self, now: float) -> bool:
        return self.inline_max > 0 and self.calm >= self.calm_needed and now >= self.hold_until

    def inline(self, now: float) -> bool:
        """Whether the next commit runs on the event loop."""
        if not self._eligible(now):
            return False
        self._roll(now)
        return self.window_spent < self.max_share * self.window

    def _to_pool(self, now: float) -> None:
        self.calm = 0
        self.average = None
        self.hold_until = now + self.hold

    def observe(self, seconds: float, now: float, inline: bool) -> bool:
        """Record a commit that took ``seconds`` (``inf``: it failed); True when it is a stall that
        ended inline commits (the caller logs it)."""
        if seconds > STALL_FACTOR * self.inline_max:
            was = self._eligible(now)
            self._to_pool(now)
            return was
        self.calm += 1
        if inline:
            self.average = seconds if self.average is None else self.average + ALPHA * (seconds - self.average)
            self._roll(now)
            self.window_spent += seconds
            if self.average > self.inline_max:
                self._to_pool(now)
        return False
