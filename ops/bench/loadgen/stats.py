"""Latency histograms that merge across processes, and percentile math (pure).

Buckets are logarithmic (2% apart) from 50 microseconds to two minutes, so a
histogram is a small list of counts that workers send to the coordinator as JSON.
"""
from __future__ import annotations

import math

BASE = 0.00005
GROWTH = 1.02
NBUCKETS = int(math.log(120 / BASE, GROWTH)) + 2


class Histogram:
    __slots__ = ("counts", "n", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = 0 if seconds <= BASE else min(NBUCKETS - 1, int(math.log(seconds / BASE, GROWTH)) + 1)
        self.counts[i] += 1
        self.n += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        """Upper edge of the bucket holding the p-th percentile, in seconds (0 if empty)."""
        if not self.n:
            return 0.0
        rank = math.ceil(self.n * p / 100.0)
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return BASE * GROWTH ** i
        return self.max

    def to_json(self) -> dict:
        return {"counts": {str(i): c for i, c in enumerate(self.counts) if c}, "n": self.n, "total": self.total,
                "max": self.max}

    @classmethod
    def from_json(cls, d: dict) -> Histogram:
        h = cls()
        for i, c in d["counts"].items():
            h.counts[int(i)] = c
        h.n, h.total, h.max = d["n"], d["total"], d["max"]
        return h
