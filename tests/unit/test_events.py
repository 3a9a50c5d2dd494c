"""Message events, pure parts: the per-key state and its idempotency, delta accumulation, the terminal
merge, the eventsync projection and event_meta."""
from __future__ import annotations

import json

from mesh.im import events as ev
from mesh.im.slot_state import SlotState
from mesh.net import wire


def op(s: SlotState, idx: int, event_id: str, etype: str, key: str = "main", payload=None, acc=None) -> list:
    change = ev.persisted_args(etype, payload, acc)
    return s.apply_op(idx, wire.OP_EVENT, {"id": "g1", "type": 2, "cmn": "c1", "key": key, "event_id": event_id,
                                           "event_type": etype, "occurred_at": 5, **change})


def test_deltas_accumulate_text_and_other_payloads_replace():
    acc = None
    for d in ("Hel", "lo"):
        acc = ev.add_delta(acc, {"kind": "text", "delta": d})
    assert acc == {"kind": "text", "text": "Hello"}
    assert ev.add_delta(acc, {"x": 1}) == {"x": 1}


def test_terminal_merge_puts_the_accumulation_in_the_snapshot():
    acc = {"kind": "text", "text": "Hello world"}
    assert ev.merge_terminal({"end_reason": "2"}, acc) == {"end_reason": "2", "snapshot": acc}
    assert ev.merge_terminal("raw", acc) == {"raw_payload": "raw", "snapshot": acc}
    change = ev.persisted_args("stream.close", {"end_reason": "2"}, acc)
    assert change == {"status": "closed", "has_snapshot": True, "snapshot": json.dumps(acc), "end_reason": 2}
    assert ev.persisted_args("stream.close", {"end_reason": 10**30}, None)["end_reason"] == 0  # kept to int64


def test_one_seq_per_message_idempotent_by_event_id_and_frozen_when_terminal():
    s = SlotState(0)
    assert op(s, 1, "e1", "stream.snapshot", payload={"a": 1})[1]["last_msg_event_seq"] == 1
    assert op(s, 2, "e1", "stream.snapshot", payload={"a": 2})[0] is False  # same event id: nothing new
    assert op(s, 3, "x1", "custom.thing", key="tool")[1]["last_msg_event_seq"] == 2
    appended, st = op(s, 4, "e2", "stream.close", acc={"kind": "text", "text": "hi"})
    assert appended and (st["status"], st["last_msg_event_seq"], json.loads(st["snapshot"])) == \
        ("closed", 3, {"kind": "text", "text": "hi"})
    assert op(s, 5, "e3", "stream.snapshot", payload={})[0] is False  # terminal
    again = SlotState.from_snapshot(0, s.to_snapshot())
    assert again.events == s.events


def test_projection_and_event_meta():
    s = SlotState(0)
    op(s, 1, "x1", "custom.thing", key="tool")
    op(s, 2, "e2", "stream.close", acc={"kind": "text", "text": "Hello world"})
    msg = s.events[("g1", 2, "c1")]
    p = ev.projection(msg, 0, 200, "", False)
    assert [(r["event_key"], r["msg_event_seq"]) for r in p["events"]] == [("tool", 1), ("main", 2)]
    assert p["events"][1]["payload"] == {"kind": "text", "text": "Hello world"} and p["next_msg_event_seq"] == 2
    assert p["events"][0]["payload"] == {"status": "", "end_reason": 0}
    assert ev.projection(msg, 1, 200, "", False)["events"][0]["event_key"] == "main"
    assert [r["event_key"] for r in ev.projection(msg, 0, 1, "", False)["events"]] == ["tool"]
    meta = ev.event_meta(msg, "c1")
    assert meta["event_meta"]["has_events"] and meta["event_meta"]["event_count"] == 2
    assert meta["event_meta"]["open_event_count"] == 1 and meta["end"] == 1 and not meta["event_meta"]["completed"]
    assert meta["event_sync_hint"] == {"client_msg_no": "c1", "from_msg_event_seq": 0}
    import base64
    assert base64.b64decode(meta["stream_data"]) == b"Hello world"


def test_event_meta_basic_mode_has_no_snapshots():
    s = SlotState(0)
    op(s, 1, "e1", "stream.close", acc={"kind": "text", "text": "Hello"})
    msg = s.events[("g1", 2, "c1")]
    full, basic = ev.event_meta(msg, "c1"), ev.event_meta(msg, "c1", basic=True)
    assert full["event_meta"]["events"][0]["snapshot"] == {"kind": "text", "text": "Hello"} and "stream_data" in full
    assert "snapshot" not in basic["event_meta"]["events"][0] and "stream_data" not in basic
    assert basic["event_meta"]["events"][0]["status"] == "closed" and basic["end"] == 1
    assert {k: v for k, v in basic["event_meta"].items() if k != "events"} == \
        {k: v for k, v in full["event_meta"].items() if k != "events"}


def test_open_deltas_on_the_leader_show_in_event_meta_but_never_over_a_terminal_key():
    s = SlotState(0)
    op(s, 1, "t1", "stream.close", key="done", acc={"kind": "text", "text": "final"})
    msg = s.events[("g1", 2, "c1")]
    open_keys = {"main": {"kind": "text", "text": "Hel"}, "done": {"kind": "text", "text": "stale"}}
    meta = ev.event_meta(msg, "c1", open_keys=open_keys)
    by_key = {e["event_key"]: e for e in meta["event_meta"]["events"]}
    assert by_key["main"]["status"] == "open" and by_key["main"]["snapshot"] == {"kind": "text", "text": "Hel"}
    assert by_key["done"]["status"] == "closed" and by_key["done"]["snapshot"] == {"kind": "text", "text": "final"}
    assert meta["event_meta"]["open_event_count"] == 1 and "end" not in meta and "end_reason" not in meta
    import base64
    assert base64.b64decode(meta["stream_data"]) == b"Hel"
    # deltas only, nothing persisted yet: the message already has events
    only = ev.event_meta(None, "c2", open_keys={"main": {"kind": "text", "text": "x"}})["event_meta"]
    assert only["has_events"] and only["open_event_count"] == 1 and only["last_msg_event_seq"] == 0


def test_stream_metas_and_message_resps_touch_only_stream_messages():
    def m(seq, cmn, setting):
        return ["g1", 2, seq, 100 + seq, "u", cmn, 1, 0, setting, 0, "", b"{}"]

    s = SlotState(0)
    op(s, 1, "e1", "stream.close", acc={"kind": "text", "text": "Hi"})
    cache = ev.DeltaCache()
    cache.add(("g1", 2, "c3"), "main", {"kind": "text", "delta": "partial"})
    msgs = [m(1, "c1", ev.STREAM), m(2, "c1", 0), m(3, "c3", ev.STREAM), m(4, "", ev.STREAM)]
    metas = ev.stream_metas(s.events, cache, "g1", 2, msgs)
    assert sorted(metas) == ["c1", "c3"]
    assert metas["c3"]["event_meta"]["events"][0]["snapshot"] == {"kind": "text", "text": "partial"}
    out = ev.message_resps(msgs, metas)
    assert ["event_meta" in r for r in out] == [True, False, True, False]
    assert out[0]["event_meta"]["events"][0]["snapshot"] == {"kind": "text", "text": "Hi"}
    assert ["event_meta" in r for r in ev.message_resps(msgs, None)] == [False] * 4
