"""Message ids: bwmarrin/snowflake layout, as WuKongIM uses (pure logic).

41 bits of milliseconds since the Twitter epoch (1288834974657), 10 bits of node id
(1-1023), 12 bits of per-millisecond sequence. Ids from one node only grow; ids from
different nodes never collide.
"""
from __future__ import annotations

import time

EPOCH_MS = 1288834974657


class Snowflake:
    __slots__ = ("node", "_last_ms", "_step", "_clock")

    def __init__(self, node: int, clock=time.time) -> None:
        if not 0 <= node <= 1023:
            raise ValueError("snowflake node id must be 0-1023")
        self.node = node
        self._last_ms = 0
        self._step = 0
        self._clock = clock

    def next(self) -> int:
        ms = int(self._clock() * 1000)
        if ms < self._last_ms:
            ms = self._last_ms  # clock went backwards: keep ids increasing
        if ms == self._last_ms:
            self._step = (self._step + 1) & 0xFFF
            if self._step == 0:
                ms = self._last_ms + 1  # 4096 ids in one millisecond: borrow the next one
        else:
            self._step = 0
        self._last_ms = ms
        return ((ms - EPOCH_MS) << 22) | (self.node << 12) | self._step

    @staticmethod
    def node_of(message_id: int) -> int:
        return (message_id >> 12) & 0x3FF

    @staticmethod
    def time_of(message_id: int) -> float:
        return ((message_id >> 22) + EPOCH_MS) / 1000.0
