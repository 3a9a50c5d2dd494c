"""The benchmark helpers that produce figures: /proc sampling over a window, WebSocket framing."""
from __future__ import annotations

import os

from ops.bench.loadgen.harness import parse_frames, ws_frame
from ops.bench.procstat import Sampler, usage


def test_between_interpolates_cpu_and_switches_inside_a_window() -> None:
    s = Sampler({"a": 1})
    s.samples = [(10.0, {"a": (1.0, 100)}), (11.0, {"a": (2.0, 300)}), (12.0, {"a": (2.5, 400)})]
    cpu, switches = s.between(10.5, 12.0)["a"]
    assert abs(cpu - 1.0) < 1e-9 and abs(switches - 200) < 1e-9
    assert s.between(9.0, 13.0)["a"] == (1.5, 300)  # outside the samples: the first and last ones


def test_usage_of_this_process_counts_its_own_cpu() -> None:
    before, _ = usage(os.getpid())
    sum(i * i for i in range(2_000_000))
    after, switches = usage(os.getpid())
    assert after > before and switches > 0


def test_ws_frames_round_trip_at_each_length_encoding() -> None:
    for n in (0, 125, 126, 65535, 65536):
        data = bytes(range(256)) * (n // 256) + bytes(n % 256)
        frame = ws_frame(data, 0x2)
        # a client frame is masked (zero mask): strip the mask bit and key to read it as a server frame
        head = 2 + (2 if 126 <= n < 65536 else 8 if n >= 65536 else 0)
        server = bytearray(frame[:1] + bytes([frame[1] & 0x7F]) + frame[2:head] + frame[head + 4:])
        partial = bytearray(server[:-1] if n else server[:1])
        assert parse_frames(partial) == [] and len(partial) == (len(server) - 1 if n else 1)  # waits for the rest
        assert parse_frames(server) == [(0x2, data)] and server == bytearray()
