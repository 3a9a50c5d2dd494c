"""Admission decisions, pure: token buckets, keyed limiters, offence streaks, log throttling.

Nothing here touches a clock, a socket or gevent: every call takes ``now`` (monotonic
seconds), so the rules are unit-tested fast and the shells (the session, the HTTP
resource, the Redis sync loop) only supply time and I/O.

* ``TokenBucket``: ``rate`` tokens per second up to ``burst``; a send takes one. It can
  be charged below zero (at most ``burst`` below) by use seen elsewhere (other nodes).
* ``KeyedLimiter``: one bucket per key (uid, from_uid, API token), created full on first
  use and forgotten once full again; it records what each key took since the last
  sync so a shell can add it to a cluster-wide counter, and charges back what the
  other nodes took (``apply_totals``). Without a sync (Redis down) it is a per-node limit.
* ``Offence``: a client refused for longer than ``grace`` seconds (no pause of ``grace``
  between refusals) is to be disconnected.
* ``LogThrottle``: one log line per offender per ``every`` seconds, with the count of
  refusals in between.
"""
from __future__ import annotations

from dataclasses import dataclass


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many; False (nothing taken) otherwise."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def charge(self, now: float, n: float) -> None:
        """Remove ``n`` tokens used elsewhere, down to ``-burst`` at most."""
        self._refill(now)
        self.tokens = max(-self.burst, self.tokens - n)

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 when one is)."""
        self._refill(now)
        if self.tokens >= 1 or self.rate <= 0:
            return 0.0 if self.tokens >= 1 else float("inf")
        return (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


@dataclass(slots=True)
class _Entry:
    bucket: TokenBucket
    unsynced: int = 0  # tokens taken here since the last sync
    total: int = -1  # cluster-wide count last read (-1: never synced)
    last_used: float = 0.0


class KeyedLimiter:
    """Token buckets by key, with the bookkeeping for a cluster-wide count (see module doc)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.entries: dict[str, _Entry] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float) -> bool:
        if not self.enabled:
            return True
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = _Entry(TokenBucket(self.rate, self.burst, now))
        e.last_used = now
        if e.bucket.take(now):
            e.unsynced += 1
            return True
        return False

    def wait_time(self, key: str, now: float) -> float:
        e = self.entries.get(key)
        return 0.0 if e is None else e.bucket.wait_time(now)

    def to_sync(self, now: float, recent: float = 2.0) -> list[tuple[str, int]]:
        """(key, tokens taken here since the last sync) for every key used in the last ``recent`` seconds
        (0 for one that took nothing: its count is still read, to learn what the other nodes took); resets them."""
        out = []
        for key, e in self.entries.items():
            if e.unsynced or now - e.last_used <= recent:
                out.append((key, e.unsynced))
                e.unsynced = 0
        return out

    def apply_totals(self, now: float, synced: list[tuple[str, int]], totals: list[int]) -> None:
        """Charge each key what other nodes took: the growth of the cluster-wide count minus our own part."""
        for (key, mine), total in zip(synced, totals):
            e = self.entries.get(key)
            if e is None:
                continue
            if e.total >= 0:
                others = total - e.total - mine
                if others > 0:
                    e.bucket.charge(now, others)
            e.total = total

    def forget_synced(self) -> None:
        """Redis is unreachable: forget the cluster counts (a later sync starts fresh)."""
        for e in self.entries.values():
            e.total = -1

    def prune(self, now: float, idle: float = 60.0) -> int:
        """Drop keys whose bucket is full and unused for ``idle`` seconds; returns how many."""
        drop = [k for k, e in self.entries.items()
                if not e.unsynced and now - e.last_used > idle and e.bucket.full(now)]
        for k in drop:
            del self.entries[k]
        return len(drop)


class Offence:
    """A run of refusals; ``refused()`` says when it has lasted longer than ``grace``."""

    __slots__ = ("grace", "since", "last")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.since = -1.0
        self.last = -1.0

    def refused(self, now: float) -> bool:
        """Record a refusal; True once refusals have gone on for ``grace`` seconds without a ``grace`` pause."""
        if self.since < 0 or now - self.last > self.grace:
            self.since = now
        self.last = now
        return now - self.since >= self.grace


class LogThrottle:
    """One line per key per ``every`` seconds; counts what was not logged."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float) -> int | None:
        """None: stay quiet; otherwise log now, with the number of hits since the last line (this one included)."""
        prev = self.last.get(key)
        if prev is None or now - prev[0] >= self.every:
            n = 1 if prev is None else prev[1] + 1
            self.last[key] = (now, 0)
            if len(self.last) > 10000:
                self.prune(now)
            return n
        self.last[key] = (prev[0], prev[1] + 1)
        return None

    def prune(self, now: float) -> None:
        for k in [k for k, (t, _n) in self.last.items() if now - t >= self.every]:
            del self.last[k]
