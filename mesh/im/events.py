"""Message events (WuKongIM v2.2.4+): ``/message/event``, ``/message/eventsync``, ``event_meta``, live EVENT.

A message sent with ``is_stream=1`` can be followed by events, keyed by the message's
``client_msg_no`` and an event key (``main`` by default). The channel's slot leader
serves them:

* ``stream.delta`` appends text to an accumulation kept in the leader's memory only
  (``DeltaCache``); it is pushed live but not persisted, as in WuKongIM. **Documented
  choice:** deltas accumulated on a leader that dies are lost (only persisted events
  survive); a client recovers the text from the terminal event's snapshot.
* every other type is a log operation of the slot (``OP_EVENT``): one state row per
  event key and one event seq per message, with WuKongIM's idempotency (the key's last
  ``event_id`` again, or a key already terminal: no new seq, the stored state
  answered). Before a terminal type (close, error, cancel) is persisted the accumulated
  text is merged into its payload as ``snapshot`` (``merge_terminal``), so the state
  holds the full text.

Every event is pushed to the channel's recipients (``evt.deliver``): binary connections
at protocol version 5 get the EVENT packet (type 12), JSON-RPC connections the
``event`` notification; older binary clients (the official JS SDK 1.0.4 speaks v2 and
does not know type 12) get nothing and read the result through ``/message/eventsync``
or ``event_meta``.
"""
from __future__ import annotations

import base64
import json
import time
from collections import OrderedDict
from typing import Any

from mesh.im.channel_rules import SYSTEM_UID
from mesh.im.messages import message_resp
from mesh.net import wire
from mesh.storage.entries import KIND_MSG, M_CMN, M_FROM, M_MID, M_SETTING

STREAM = 0x02  # Setting.Stream
MAIN_KEY = "main"
FINISH_KEY = "__finish__"
TERMINAL = {"stream.close": "closed", "stream.error": "error", "stream.cancel": "cancelled",
            "stream.finish": "closed"}
DELTA = "stream.delta"
DELTA_CACHE_MAX = 50_000


# ------------------------------------------------------------------ pure state rules
def new_key_state() -> dict:
    return {"status": "", "last_msg_event_seq": 0, "last_event_id": "", "last_event_type": "",
            "last_visibility": "", "last_occurred_at": 0, "snapshot": None, "end_reason": 0, "error": ""}


def apply_event(msg: dict, a: dict) -> list:
    """Apply one persisted event to a message's state ``{"seq", "keys"}``: [appended, key state]."""
    keys = msg.setdefault("keys", {})
    st = keys.get(a["key"])
    if st is not None and (st["last_event_id"] == a["event_id"] or st["status"] in ("closed", "error", "cancelled")):
        return [False, dict(st)]
    if st is None:
        st = keys[a["key"]] = new_key_state()
    msg["seq"] = msg.get("seq", 0) + 1
    st["last_msg_event_seq"] = msg["seq"]
    st["last_event_id"] = a["event_id"]
    st["last_event_type"] = a["event_type"]
    st["last_visibility"] = a.get("visibility", "")
    st["last_occurred_at"] = int(a.get("occurred_at") or 0)
    if a.get("has_snapshot"):
        st["snapshot"] = a.get("snapshot")
    if a.get("status"):
        st["status"] = a["status"]
    if a.get("end_reason") is not None:
        st["end_reason"] = a["end_reason"]
    if a.get("error"):
        st["error"] = a["error"]
    return [True, dict(st)]


def _end_reason(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        return 0
    return n if -(2**63) <= n < 2**63 else 0


def merge_terminal(payload: Any, accumulated: Any) -> Any:
    """The payload to persist for a terminal event: the accumulation merged in as ``snapshot``."""
    if accumulated is None:
        return payload
    out = dict(payload) if isinstance(payload, dict) else ({} if payload is None else {"raw_payload": payload})
    out["snapshot"] = accumulated
    return out


def persisted_args(event_type: str, payload: Any, accumulated: Any) -> dict:
    """The state change of a persisted event (snapshot, status, end reason, error).

    The snapshot travels and is stored as JSON text (any JSON value, whatever its numbers).
    """
    out = _persisted_args(event_type, payload, accumulated)
    if out.get("has_snapshot"):
        out["snapshot"] = json.dumps(out["snapshot"], ensure_ascii=False)
    return out


def _snapshot(st: dict) -> Any:
    return None if st["snapshot"] is None else json.loads(st["snapshot"])


def _persisted_args(event_type: str, payload: Any, accumulated: Any) -> dict:
    out: dict = {}
    if event_type == "stream.snapshot":
        out.update(has_snapshot=True, snapshot=payload)
    elif event_type in TERMINAL:
        merged = merge_terminal(payload, accumulated) if event_type != "stream.finish" else payload
        out["status"] = TERMINAL[event_type]
        if isinstance(merged, dict):
            if "snapshot" in merged:
                out.update(has_snapshot=True, snapshot=merged["snapshot"])
            if "end_reason" in merged:
                out["end_reason"] = _end_reason(merged["end_reason"])
            if event_type == "stream.error" and merged.get("error"):
                out["error"] = str(merged["error"])
    return out


def add_delta(acc: Any, payload: Any) -> Any:
    """Deltas of kind text append; any other payload replaces the accumulation."""
    if isinstance(payload, dict) and payload.get("kind") == "text" and isinstance(payload.get("delta"), str):
        if isinstance(acc, dict) and acc.get("kind") == "text":
            return {"kind": "text", "text": acc.get("text", "") + payload["delta"]}
        return {"kind": "text", "text": payload["delta"]}
    return payload


def projection(msg: dict | None, from_seq: int, limit: int, event_key: str, include_private: bool) -> dict:
    """``/message/eventsync``'s answer (one row per key with a newer seq, ascending)."""
    rows = []
    for key, st in (msg or {}).get("keys", {}).items():
        if st["last_msg_event_seq"] <= from_seq or (event_key and key != event_key):
            continue
        if not include_private and st["last_visibility"] in ("private", "restricted"):
            continue
        if st["snapshot"] is not None:
            payload = _snapshot(st)
        else:
            payload = {"status": st["status"], "end_reason": st["end_reason"]}
            if st["error"]:
                payload["error"] = st["error"]
        rows.append({"msg_event_seq": st["last_msg_event_seq"], "event_id": st["last_event_id"], "event_key": key,
                     "event_type": st["last_event_type"], "visibility": st["last_visibility"],
                     "occurred_at": st["last_occurred_at"], "payload": payload})
    rows.sort(key=lambda r: r["msg_event_seq"])
    more = 1 if len(rows) > limit else 0
    rows = rows[:limit]
    return {"from_msg_event_seq": from_seq, "next_msg_event_seq": rows[-1]["msg_event_seq"] if rows else from_seq,
            "more": more, "events": rows, "filtered_by_event_key": event_key}


def with_open_keys(keys: dict, open_keys: dict | None) -> dict:
    """Key states with the leader's accumulated deltas laid over the persisted ones (pure).

    A key with deltas and no terminal state is shown ``open`` with the accumulation as
    its snapshot (WuKongIM's ``mergeEventStatesWithCache``); terminal keys keep their state.
    """
    if not open_keys:
        return keys
    out = dict(keys)
    for key, acc in open_keys.items():
        st = out.get(key)
        if st is not None and st["status"] in ("closed", "error", "cancelled"):
            continue
        st = dict(st) if st is not None else new_key_state()
        st["status"] = "open"
        st["snapshot"] = None if acc is None else json.dumps(acc, ensure_ascii=False)
        out[key] = st
    return out


def event_meta(msg: dict | None, cmn: str, *, basic: bool = False, open_keys: dict | None = None) -> dict:
    """``event_meta`` and ``event_sync_hint`` of a stream message (plus the legacy fields from key ``main``).

    ``basic`` (``event_summary_mode: "basic"``): no snapshots (neither per key nor as ``stream_data``).
    ``open_keys``: the leader's accumulated deltas of this message per key (``DeltaCache``).
    """
    keys = with_open_keys((msg or {}).get("keys", {}), open_keys)
    events = []
    for key, st in sorted(keys.items(), key=lambda kv: kv[1]["last_msg_event_seq"]):
        e = {"event_key": key, "status": st["status"], "last_msg_event_seq": st["last_msg_event_seq"]}
        if st["snapshot"] is not None and not basic:
            e["snapshot"] = _snapshot(st)
        if st["end_reason"]:
            e["end_reason"] = st["end_reason"]
        if st["error"]:
            e["error"] = st["error"]
        events.append(e)
    seq = (msg or {}).get("seq", 0)
    out = {"event_meta": {"has_events": bool(keys), "completed": FINISH_KEY in keys, "event_version": seq,
                          "last_msg_event_seq": seq, "event_count": len([k for k in keys if k != FINISH_KEY]),
                          "open_event_count": len([k for k, st in keys.items()
                                                   if k != FINISH_KEY and st["status"] in ("", "open")]),
                          "events": events},
           "event_sync_hint": {"client_msg_no": cmn, "from_msg_event_seq": 0}}
    main = keys.get(MAIN_KEY)
    if main is not None:
        snap = None if basic else _snapshot(main)
        if snap is not None:
            raw = snap["text"] if isinstance(snap, dict) and snap.get("kind") == "text" else json.dumps(snap)
            out["stream_data"] = base64.b64encode(str(raw).encode()).decode()
        if main["status"] in ("closed", "error", "cancelled"):
            out["end"] = 1
        if main["end_reason"]:
            out["end_reason"] = main["end_reason"]  # the legacy fields are omitempty in WuKongIM
        if main["error"]:
            out["error"] = main["error"]
    return out


def stream_metas(events: dict, deltas: DeltaCache | None, sid: str, ctype: int, msgs: list, *,
                 basic: bool = False) -> dict[str, dict]:
    """{client_msg_no: event fields} of the stream messages among ``msgs`` of one channel (on its leader)."""
    out: dict[str, dict] = {}
    for m in msgs:
        cmn = m[M_CMN]
        if cmn and m[M_SETTING] & STREAM:
            mkey = (sid, ctype, cmn)
            out[cmn] = event_meta(events.get(mkey), cmn, basic=basic,
                                  open_keys=deltas.items.get(mkey) if deltas is not None else None)
    return out


def message_resps(msgs: list, metas: dict | None) -> list[dict]:
    """MessageResp of each message, with its event fields if it is a stream message in ``metas``."""
    out = []
    for m in msgs:
        r = message_resp(m)
        if metas and m[M_SETTING] & STREAM and m[M_CMN] in metas:
            r.update(metas[m[M_CMN]])
        out.append(r)
    return out


# ------------------------------------------------------------------ the leader's side
class DeltaCache:
    """Accumulated deltas per (stored channel, type, client_msg_no) and key, on the leader (memory only)."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple, dict] = OrderedDict()

    def get(self, mkey: tuple, key: str) -> Any:
        return self.items.get(mkey, {}).get(key)

    def add(self, mkey: tuple, key: str, payload: Any) -> None:
        d = self.items.setdefault(mkey, {})
        self.items.move_to_end(mkey)
        d[key] = add_delta(d.get(key), payload)
        while len(self.items) > DELTA_CACHE_MAX:
            self.items.popitem(last=False)

    def drop(self, mkey: tuple, key: str) -> None:
        d = self.items.get(mkey)
        if d is not None:
            d.pop(key, None)
            if not d:
                del self.items[mkey]


def register(service, node) -> DeltaCache:
    """Serve ``EVT_APPEND`` and ``EVT_SYNC``; returns the leader's delta cache (history reads show open keys)."""
    cache = DeltaCache()

    def anchor(svc, slot: int, sid: str, ctype: int, cmn: str) -> tuple[str, int]:
        r = svc.replica(slot)
        rows = r.store.messages(slot, sid, ctype, "cmn = ?", [cmn], limit=1, max_idx=r.commit_index)
        rows = [e for e in rows if e[2] == KIND_MSG]
        return (rows[0][3][M_FROM], rows[0][3][M_MID]) if rows else ("", 0)

    def append(svc, slot: int, a: dict) -> dict:
        from mesh.im.cmd import recipients

        sid, ctype, cmn = a["sid"], int(a["type"]), a["client_msg_no"]
        etype = a["event_type"].strip().lower()
        key = FINISH_KEY if etype == "stream.finish" else (a.get("event_key") or MAIN_KEY)
        from_uid, mid = a.get("from_uid") or "", int(a.get("message_id") or 0)
        if not from_uid or not mid:
            f, m = anchor(svc, slot, sid, ctype, cmn)
            from_uid, mid = from_uid or f or SYSTEM_UID, mid or m
        state = svc.state(slot)
        mkey = (sid, ctype, cmn)
        msg = state.events.get(mkey)
        st = (msg or {}).get("keys", {}).get(key)
        payload = None if a.get("payload") is None else json.loads(a["payload"])
        if etype == DELTA:
            if st is not None and st["status"] in ("closed", "error", "cancelled"):
                return {"error": "stream closed"}
            cache.add(mkey, key, payload)
            seq, status = (st["last_msg_event_seq"] if st else 0), "open"
        else:
            change = persisted_args(etype, payload, cache.get(mkey, key) if etype in TERMINAL else None)
            appended, st = svc.propose(slot, wire.OP_EVENT, {
                "id": sid, "type": ctype, "cmn": cmn, "key": key, "event_id": a["event_id"], "event_type": etype,
                "visibility": a.get("visibility", ""), "occurred_at": a.get("occurred_at") or int(time.time() * 1000),
                **change})
            if etype in TERMINAL:
                cache.drop(mkey, key)
            seq, status = st["last_msg_event_seq"], st["status"]
        data = {"client_msg_no": cmn, "channel_id": a["channel_id"], "channel_type": ctype, "from_uid": from_uid,
                "message_id": mid, "event_key": key, "msg_event_seq": seq, "stream_status": status}
        if a.get("visibility"):
            data["visibility"] = a["visibility"]
        if payload is not None:
            data["payload"] = payload
        item = [recipients(state, sid, ctype), a["event_id"], a["event_type"], int(a.get("occurred_at") or 0),
                json.dumps(data, ensure_ascii=False)]
        node.deliver_event(item)
        node.mesh.publish_remote(wire.EVT_DELIVER, item)
        return {"client_msg_no": cmn, "event_key": key, "event_id": a["event_id"], "msg_event_seq": seq,
                "stream_status": status, "channel_id": a["channel_id"], "channel_type": ctype, "from_uid": from_uid}

    def sync(svc, slot: int, a: dict) -> dict:
        msg = svc.state(slot).events.get((a["sid"], int(a["type"]), a["client_msg_no"]))
        out = projection(msg, int(a["from"]), int(a["limit"]), a.get("event_key", ""), bool(a.get("include_private")))
        out["client_msg_no"] = a["client_msg_no"]
        return out

    service.register(wire.EVT_APPEND, append)
    service.register(wire.EVT_SYNC, sync)
    return cache
