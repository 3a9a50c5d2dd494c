"""The queued /message/sendbatch in the slot state: added once, progress only forward, forgotten when done,
kept by snapshots (pure logic)."""
from __future__ import annotations

import msgpack

from mesh.im.slot_state import SlotState
from mesh.net import wire


def add(s: SlotState, idx: int, bid: str, subs: list[str]) -> int:
    return s.apply_op(idx, wire.OP_BATCH_ADD, {"id": bid, "from": "f", "flags": 1, "subs": subs, "payload": b"\x00p"})


def test_batch_add_progress_and_done():
    s = SlotState(3)
    assert add(s, 1, "b1", ["a", "b", "c"]) == 3
    assert add(s, 2, "b1", ["x"]) == 3  # a replayed add changes nothing
    assert s.batches["b1"]["done"] == 0 and s.batches["b1"]["payload"] == b"\x00p"
    assert s.apply_op(3, wire.OP_BATCH_DONE, {"id": "b1", "done": 2}) == 1
    assert s.apply_op(4, wire.OP_BATCH_DONE, {"id": "b1", "done": 1}) == 1  # never backwards
    assert s.batches["b1"]["done"] == 2
    assert s.apply_op(5, wire.OP_BATCH_DONE, {"id": "b1", "done": 3}) == 0
    assert "b1" not in s.batches
    assert s.apply_op(6, wire.OP_BATCH_DONE, {"id": "b1", "done": 3}) == 0  # late progress of a finished batch


def test_batches_survive_a_snapshot():
    s = SlotState(3)
    add(s, 1, "b1", ["a", "b"])
    add(s, 2, "b2", ["c"])
    s.apply_op(3, wire.OP_BATCH_DONE, {"id": "b1", "done": 1})
    blob = msgpack.packb(s.to_snapshot(), use_bin_type=True)
    r = SlotState.from_snapshot(3, msgpack.unpackb(blob, raw=False, strict_map_key=False))
    assert r.batches == s.batches and list(r.batches) == ["b1", "b2"]
    assert SlotState.from_snapshot(3, {}).batches == {}
