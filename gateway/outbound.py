"""One connection's outbound buffer, pure: no sockets, no gevent, the clock passed in.

Frames wait here, in order, while the client's socket cannot take them. The buffer
counts the bytes still to write and remembers when each frame was queued, decides
when the connection is too slow (more bytes than ``conn.outboundMaxBytes``, an oldest
frame older than ``conn.outboundMaxDelay``, more frames than ``conn.maxPendingFrames``),
and hands the writer batches of whole frames to write with one ``sendmsg`` (several
frames, each still its own WebSocket message), remembering how much of the first
frame a partial write already sent.
"""
from __future__ import annotations

from collections import deque

MAX_BATCH_FRAMES = 64  # frames per sendmsg (well under IOV_MAX)
MAX_BATCH_BYTES = 256 * 1024


class Outbound:
    __slots__ = ("frames", "times", "nbytes", "offset", "inflight")

    def __init__(self) -> None:
        self.frames: deque = deque()
        self.times: deque[float] = deque()
        self.nbytes = 0  # bytes still to write (the head's written part excluded)
        self.offset = 0  # bytes of the head frame already written
        self.inflight = 0  # frames handed to a write that has not returned yet

    def __len__(self) -> int:
        return len(self.frames)

    def push(self, frame, now: float) -> None:
        self.frames.append(frame)
        self.times.append(now)
        self.nbytes += len(frame)

    def oldest_age(self, now: float) -> float:
        return now - self.times[0] if self.times else 0.0

    def too_slow(self, now: float, max_bytes: int, max_delay: float, max_frames: int) -> str:
        """Which limit the connection is over ("bytes", "age", "frames"), or ""."""
        if self.nbytes > max_bytes:
            return "bytes"
        if self.times and now - self.times[0] > max_delay:
            return "age"
        if len(self.frames) > max_frames:
            return "frames"
        return ""

    def batch(self) -> list:
        """The next frames to write in one call (the head without its written part first)."""
        frames = self.frames
        if not frames:
            return []
        head = frames[0]
        out = [memoryview(head)[self.offset:] if self.offset else head]
        size = len(out[0])
        for i in range(1, min(len(frames), MAX_BATCH_FRAMES)):
            f = frames[i]
            if size + len(f) > MAX_BATCH_BYTES:
                break
            out.append(f)
            size += len(f)
        self.inflight = len(out)
        return out

    def sent(self, n: int) -> None:
        """Account ``n`` bytes written from the front of the buffer."""
        self.inflight = 0
        if n <= 0:
            return
        self.nbytes -= n
        frames, times = self.frames, self.times
        n += self.offset
        while frames and n >= len(frames[0]):
            n -= len(frames.popleft())
            times.popleft()
        self.offset = n if frames else 0

    def drop_unsent(self) -> int:
        """Forget every frame not started (a partly written head, or frames a pending write holds,
        stay: the byte stream must stay whole)."""
        keep = min(len(self.frames), max(self.inflight, 1 if self.offset else 0))
        dropped = len(self.frames) - keep
        while len(self.frames) > keep:
            self.nbytes -= len(self.frames.pop())
            self.times.pop()
        return dropped
