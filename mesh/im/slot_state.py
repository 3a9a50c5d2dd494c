"""The replicated state of one slot, as a deterministic state machine (pure logic).

Every change is a log entry applied in order on every replica of the slot, so
replicas that applied the same entries hold the same state:

* OP entries ``[op, args]``: users and devices (token and level per device flag),
  channel info (ban, disband, send_ban, large, allow_stranger), subscribers, deny and
  allow lists, and the conversations of the slot's users (read and deleted positions);
* CMD rows of the slot's users: the read position in each CMD channel (``<id>____cmd``)
  and the window the last ``/message/sync`` handed out (replicated, unlike WuKongIM's
  node-local memory, so a leader change or a second device loses neither);
* the added system uids (in the slot of the key ``____system``);
* queued ``/message/sendbatch`` fan-outs (in the from_uid's slot) and how far each
  has been sent (``mesh.im.send_batches``);
* message events: per (channel, type, client_msg_no) one state row per event key and
  the message's event seq (``mesh.im.events``);
* MSG entries: a message of one channel; applying it advances the channel's last
  sequence number and remembers (channel, from_uid, client_msg_no) for deduplication.

Channels are keyed by ``(channel id, channel type)``; a person chat is stored under
its fake id (``a@b`` by WuKongIM's CRC32 rule) with type 1, while a user's own person
channel ``(uid, 1)`` carries that user's flags and lists.
"""
from __future__ import annotations

from typing import Any

from mesh.net import wire
from mesh.storage.entries import M_CHANNEL, M_CMN, M_CTYPE, M_FROM, M_MID, M_SEQ, M_TS

INFO_FIELDS = ("ban", "disband", "send_ban", "large", "allow_stranger")
# (channel, from_uid, client_msg_no) of recent messages, to answer a client's retry with the
# original id and seq: at most DEDUPE_LIMIT per slot, none older than DEDUPE_SECONDS (by the
# messages' own timestamps, so every replica forgets the same ones)
DEDUPE_LIMIT = 20_000
DEDUPE_SECONDS = 600


class Channel:
    __slots__ = ("info", "subscribers", "deny", "allow", "last_seq", "last_ts", "convs", "exists", "version",
                 "senders")

    def __init__(self) -> None:
        self.info: dict[str, int] = {}
        self.subscribers: set[str] = set()
        self.deny: set[str] = set()
        self.allow: set[str] = set()
        self.last_seq = 0
        self.last_ts = 0
        self.convs: set[str] = set()  # uids whose conversation row for this channel exists
        self.exists = False  # created by the API (info or subscribers), not only by messages
        self.version = 0
        self.senders: dict[str, int] = {}  # uid -> seq of the last message that uid sent here

    def flag(self, name: str) -> int:
        return int(self.info.get(name, 0) or 0)

    def to_snap(self) -> list:
        return [self.info, sorted(self.subscribers), sorted(self.deny), sorted(self.allow), self.last_seq,
                self.last_ts, sorted(self.convs), self.exists, self.version, self.senders]

    @classmethod
    def from_snap(cls, d: list) -> Channel:
        c = cls()
        c.info, subs, deny, allow, c.last_seq, c.last_ts, convs, c.exists, c.version, c.senders = d
        c.subscribers, c.deny, c.allow, c.convs = set(subs), set(deny), set(allow), set(convs)
        return c


class Conv:
    """One user's conversation with one channel (kept in the user's slot)."""

    __slots__ = ("read_seq", "deleted_seq", "created_at", "updated_at")

    def __init__(self, read_seq: int = 0, deleted_seq: int = 0, created_at: int = 0, updated_at: int = 0) -> None:
        self.read_seq = read_seq
        self.deleted_seq = deleted_seq
        self.created_at = created_at
        self.updated_at = updated_at

    def to_snap(self) -> list:
        return [self.read_seq, self.deleted_seq, self.created_at, self.updated_at]


def _dedupe_key(cid: str, ctype: int, from_uid: str, cmn: str) -> str:
    # length-prefixed, so no two (channel, type, sender, client_msg_no) share a key
    return f"{ctype}:{len(cid)}:{cid}{len(from_uid)}:{from_uid}{cmn}"


def _pack(mid: int, seq: int, ts: int) -> int:
    return (mid << 112) | (seq << 48) | ts  # seq < 2**64, ts (seconds) < 2**48


def _unpack(v: int) -> tuple[int, int, int]:
    return v >> 112, (v >> 48) & 0xFFFFFFFFFFFFFFFF, v & 0xFFFFFFFFFFFF


class Dedupe:
    """Which (channel, sender, client_msg_no) a slot has already stored, and as what.

    Two generations of plain ``str -> int`` dicts: a full generation (``DEDUPE_LIMIT / 2``
    entries, or older than ``DEDUPE_SECONDS / 2``) becomes the old one and the old one is
    dropped whole. So a retry is recognised among at least the last ``DEDUPE_LIMIT / 2``
    messages of the slot within ``DEDUPE_SECONDS / 2``, and at most twice that. Keys are
    strings and values one packed int (message id, seq, timestamp), so the dicts hold no
    object the cycle collector tracks and cost nothing at a full collection however big
    they grow (an ``OrderedDict`` of tuples cost ~30 ms per collection at 1.3 M entries).
    Rotation depends only on the applied entries, so every replica holds the same set.
    """

    __slots__ = ("cur", "old", "cur_first_ts")

    def __init__(self) -> None:
        self.cur: dict[str, int] = {}
        self.old: dict[str, int] = {}
        self.cur_first_ts = 0

    def __len__(self) -> int:
        return len(self.cur) + len(self.old)

    def get(self, cid: str, ctype: int, from_uid: str, cmn: str) -> tuple[int, int, int] | None:
        k = _dedupe_key(cid, ctype, from_uid, cmn)
        v = self.cur.get(k)
        if v is None:
            v = self.old.get(k)
            if v is None:
                return None
        return _unpack(v)

    def add(self, cid: str, ctype: int, from_uid: str, cmn: str, mid: int, seq: int, ts: int) -> None:
        cur = self.cur
        if not cur:
            self.cur_first_ts = ts
        cur[_dedupe_key(cid, ctype, from_uid, cmn)] = _pack(mid, seq, ts)
        if len(cur) >= DEDUPE_LIMIT // 2 or ts - self.cur_first_ts >= DEDUPE_SECONDS // 2:
            self.old, self.cur = cur, {}

    def to_snap(self) -> dict:
        # msgpack takes ints up to 64 bits: the packed values travel as their parts
        return {"old": [[k, *_unpack(v)] for k, v in self.old.items()],
                "cur": [[k, *_unpack(v)] for k, v in self.cur.items()], "cur_first_ts": self.cur_first_ts}

    @classmethod
    def from_snap(cls, snap: dict | list) -> Dedupe:
        d = cls()
        if isinstance(snap, list):  # snapshots written before the two generations
            for cid, ctype, frm, cmn, mid, seq, ts in snap:
                d.add(cid, int(ctype), frm, cmn, mid, seq, ts)
            return d
        d.old = {str(k): _pack(mid, seq, ts) for k, mid, seq, ts in snap.get("old", [])}
        d.cur = {str(k): _pack(mid, seq, ts) for k, mid, seq, ts in snap.get("cur", [])}
        d.cur_first_ts = int(snap.get("cur_first_ts", 0))
        return d


class SlotState:
    def __init__(self, slot_id: int) -> None:
        self.slot_id = slot_id
        self.devices: dict[str, dict[int, list]] = {}  # uid -> flag -> [token, level]
        self.channels: dict[tuple[str, int], Channel] = {}
        self.convs: dict[str, dict[tuple[str, int], Conv]] = {}  # uid -> (channel id, type) -> Conv
        self.dedupe = Dedupe()
        self.cmd: dict[str, dict[tuple[str, int], int]] = {}  # uid -> (CMD channel, type) -> read seq
        self.cmd_synced: dict[str, list[list]] = {}  # uid -> [[CMD channel, type, seq]] of the last sync
        self.system_uids: set[str] = set()
        self.events: dict[tuple[str, int, str], dict] = {}  # (channel, type, client_msg_no) -> {"seq", "keys"}
        self.batches: dict[str, dict] = {}  # sendbatch id -> {"from", "flags", "subs", "payload", "done"}
        self.applied = 0  # index of the last applied entry

    # ------------------------------------------------------------------ reads
    def token(self, uid: str, device_flag: int) -> tuple[str, int] | None:
        d = self.devices.get(uid, {}).get(device_flag)
        return (d[0], d[1]) if d else None

    def channel(self, cid: str, ctype: int) -> Channel | None:
        return self.channels.get((cid, ctype))

    def last_seq(self, cid: str, ctype: int) -> int:
        c = self.channels.get((cid, ctype))
        return c.last_seq if c else 0

    def seen(self, cid: str, ctype: int, from_uid: str, cmn: str) -> tuple[int, int, int] | None:
        return self.dedupe.get(cid, ctype, from_uid, cmn)

    # ------------------------------------------------------------------ applying entries
    def apply_msg(self, idx: int, d: list) -> None:
        key = (d[M_CHANNEL], d[M_CTYPE])
        c = self.channels.get(key)
        if c is None:
            c = self.channels[key] = Channel()
        seq = d[M_SEQ]
        if seq > c.last_seq:
            c.last_seq = seq
            c.last_ts = d[M_TS]
        c.senders[d[M_FROM]] = seq
        self.dedupe.add(d[M_CHANNEL], d[M_CTYPE], d[M_FROM], d[M_CMN], d[M_MID], seq, d[M_TS])
        self.applied = idx

    def apply_op(self, idx: int, op: str, args: dict) -> Any:
        fn = _OPS.get(op)
        if fn is None:
            raise ValueError(f"unknown slot operation {op!r}")
        self.applied = idx
        return fn(self, args)

    def _ch(self, a: dict) -> Channel:
        key = (a["id"], int(a["type"]))
        c = self.channels.get(key)
        if c is None:
            c = self.channels[key] = Channel()
        return c

    # ---- users
    def _user_token(self, a: dict) -> None:
        self.devices.setdefault(a["uid"], {})[int(a["device_flag"])] = [a["token"], int(a["device_level"])]

    def _user_quit(self, a: dict) -> None:
        devs = self.devices.get(a["uid"])
        for f in a["device_flags"] if devs else ():
            d = devs.get(int(f))
            if d is not None:
                d[0] = ""  # must authenticate again

    # ---- channels
    def _channel_info(self, a: dict) -> None:
        c = self._ch(a)
        for k in INFO_FIELDS:
            if k in a["info"]:
                c.info[k] = int(a["info"][k])
        c.exists = True
        c.version += 1

    def _channel_subscribers(self, a: dict) -> list[str]:
        """Returns the uids newly added."""
        c = self._ch(a)
        before = set(c.subscribers)
        if a.get("reset"):
            c.subscribers = set()
        c.subscribers.update(a.get("add", ()))
        c.subscribers.difference_update(a.get("remove", ()))
        if a.get("remove_all"):
            c.subscribers = set()
        c.exists = True
        c.version += 1
        return sorted(c.subscribers - before)

    def _channel_list(self, a: dict) -> None:
        c = self._ch(a)
        target = c.deny if a["list"] == "deny" else c.allow
        mode = a["mode"]
        if mode == "set":
            target.clear()
            target.update(a["uids"])
        elif mode == "add":
            target.update(a["uids"])
        elif mode == "remove":
            target.difference_update(a["uids"])
        elif mode == "clear":
            target.clear()
        c.exists = True
        c.version += 1

    def _channel_conv_ensured(self, a: dict) -> None:
        self._ch(a).convs.update(a["uids"])

    def _channel_conv_forget(self, a: dict) -> None:
        c = self.channels.get((a["id"], int(a["type"])))
        if c is not None:
            c.convs.difference_update(a["uids"])

    # ---- conversations (in the user's slot)
    def _conv_ensure(self, a: dict) -> bool:
        """Create the conversation if missing, read up to ``read_seq``. True if created."""
        convs = self.convs.setdefault(a["uid"], {})
        key = (a["id"], int(a["type"]))
        if key in convs:
            return False
        now = int(a.get("now") or 0)
        convs[key] = Conv(int(a.get("read_seq", 0)), 0, now, now)
        return True

    def _conv_remove(self, a: dict) -> None:
        convs = self.convs.get(a["uid"])
        if convs is not None:
            convs.pop((a["id"], int(a["type"])), None)
            if not convs:
                del self.convs[a["uid"]]

    def _conv_set(self, a: dict) -> bool:
        """Move the read and/or deleted position; True if the conversation changed.

        ``raise_only``: the read position only moves forward (WuKongIM's setUnread and
        clearUnread); ``if_exists``: do nothing for a conversation that does not exist.
        """
        convs = self.convs.get(a["uid"])
        key = (a["id"], int(a["type"]))
        conv = convs.get(key) if convs else None
        now = int(a.get("now") or 0)
        if conv is None:
            if a.get("if_exists"):
                return False
            conv = self.convs.setdefault(a["uid"], {})[key] = Conv(0, 0, now, now)
        changed = False
        if "read_seq" in a:
            target = int(a["read_seq"])
            if not (a.get("raise_only") and conv.read_seq >= target):
                changed |= conv.read_seq != target
                conv.read_seq = target
        if "deleted_seq" in a and int(a["deleted_seq"]) > conv.deleted_seq:
            conv.deleted_seq = int(a["deleted_seq"])
            changed = True
        if changed:
            conv.updated_at = now
        return changed

    # ---- CMD rows (in the user's slot)
    def _cmd_ensure(self, a: dict) -> int:
        """Insert-if-absent the CMD rows ``[[uid, read seq]]`` of one CMD channel; the count created."""
        key = (a["id"], int(a["type"]))
        n = 0
        for uid, read in a["rows"]:
            rows = self.cmd.setdefault(uid, {})
            if key not in rows:
                rows[key] = int(read)
                n += 1
        return n

    def _cmd_read(self, a: dict) -> bool:
        """Raise one existing row's read position (a master device's RECVACK)."""
        rows = self.cmd.get(a["uid"])
        key = (a["id"], int(a["type"]))
        if rows is None or key not in rows or rows[key] >= int(a["seq"]):
            return False
        rows[key] = int(a["seq"])
        return True

    def _cmd_synced(self, a: dict) -> None:
        if a["record"]:
            self.cmd_synced[a["uid"]] = [list(r) for r in a["record"]]
        else:
            self.cmd_synced.pop(a["uid"], None)

    def _cmd_ack(self, a: dict) -> int:
        """Apply (and clear) the window of the uid's last sync to its existing rows; rows moved."""
        record = self.cmd_synced.pop(a["uid"], None) or []
        rows = self.cmd.get(a["uid"], {})
        n = 0
        for cid, ctype, seq in record:
            key = (cid, int(ctype))
            if key in rows and rows[key] < int(seq):
                rows[key] = int(seq)
                n += 1
        return n

    # ---- system uids (in the slot of ``____system``)
    def _sysuid(self, a: dict) -> list:
        """[log index of this change, every stored system uid]."""
        self.system_uids.update(a.get("add", ()))
        self.system_uids.difference_update(a.get("remove", ()))
        return [self.applied, sorted(self.system_uids)]

    # ---- message events (in the channel's slot)
    def _event(self, a: dict) -> list:
        from mesh.im.events import apply_event

        return apply_event(self.events.setdefault((a["id"], int(a["type"]), a["cmn"]), {"seq": 0, "keys": {}}), a)

    # ---- queued /message/sendbatch fan-outs (in the from_uid's slot)
    def _batch_add(self, a: dict) -> int:
        """Queue a batch (a replayed add of a known id changes nothing); returns its message count."""
        if a["id"] not in self.batches:
            self.batches[a["id"]] = {"from": a["from"], "flags": int(a.get("flags", 0)), "subs": list(a["subs"]),
                                     "payload": a["payload"], "done": 0}
        return len(self.batches[a["id"]]["subs"])

    def _batch_done(self, a: dict) -> int:
        """Messages before ``done`` are sent; a finished batch is forgotten. Returns the messages left."""
        b = self.batches.get(a["id"])
        if b is None:
            return 0
        b["done"] = max(b["done"], int(a["done"]))
        left = len(b["subs"]) - b["done"]
        if left <= 0:
            del self.batches[a["id"]]
        return max(left, 0)

    # ------------------------------------------------------------------ snapshots
    def to_snapshot(self) -> dict:
        return {
            "devices": self.devices,
            "channels": [[k[0], k[1], c.to_snap()] for k, c in self.channels.items()],
            "convs": {uid: [[k[0], k[1], cv.to_snap()] for k, cv in d.items()] for uid, d in self.convs.items()},
            "dedupe": self.dedupe.to_snap(),
            "cmd": {uid: [[k[0], k[1], v] for k, v in d.items()] for uid, d in self.cmd.items()},
            "cmd_synced": self.cmd_synced,
            "system_uids": sorted(self.system_uids),
            "events": [[k[0], k[1], k[2], v] for k, v in self.events.items()],
            "batches": [[k, v] for k, v in self.batches.items()],
            "applied": self.applied,
        }

    @classmethod
    def from_snapshot(cls, slot_id: int, snap: dict) -> SlotState:
        s = cls(slot_id)
        s.devices = {uid: {int(f): list(v) for f, v in d.items()} for uid, d in snap.get("devices", {}).items()}
        for cid, ctype, c in snap.get("channels", []):
            s.channels[(cid, int(ctype))] = Channel.from_snap(c)
        for uid, items in snap.get("convs", {}).items():
            s.convs[uid] = {(cid, int(ctype)): Conv(*v) for cid, ctype, v in items}
        s.dedupe = Dedupe.from_snap(snap.get("dedupe", []))
        s.cmd = {uid: {(cid, int(ctype)): int(v) for cid, ctype, v in items} for uid, items in snap.get("cmd", {}).items()}
        s.cmd_synced = {uid: [list(r) for r in rec] for uid, rec in snap.get("cmd_synced", {}).items()}
        s.system_uids = set(snap.get("system_uids", []))
        s.events = {(cid, int(ctype), cmn): v for cid, ctype, cmn, v in snap.get("events", [])}
        s.batches = {k: v for k, v in snap.get("batches", [])}
        s.applied = int(snap.get("applied", 0))
        return s


_OPS = {
    wire.OP_USER_TOKEN: SlotState._user_token,
    wire.OP_USER_QUIT: SlotState._user_quit,
    wire.OP_CHANNEL_INFO: SlotState._channel_info,
    wire.OP_CHANNEL_SUBSCRIBERS: SlotState._channel_subscribers,
    wire.OP_CHANNEL_LIST: SlotState._channel_list,
    wire.OP_CHANNEL_CONV_ENSURED: SlotState._channel_conv_ensured,
    wire.OP_CHANNEL_CONV_FORGET: SlotState._channel_conv_forget,
    wire.OP_CONV_ENSURE: SlotState._conv_ensure,
    wire.OP_CONV_REMOVE: SlotState._conv_remove,
    wire.OP_CONV_SET: SlotState._conv_set,
    wire.OP_CMD_ENSURE: SlotState._cmd_ensure,
    wire.OP_CMD_READ: SlotState._cmd_read,
    wire.OP_CMD_SYNCED: SlotState._cmd_synced,
    wire.OP_CMD_ACK: SlotState._cmd_ack,
    wire.OP_SYSUID: SlotState._sysuid,
    wire.OP_EVENT: SlotState._event,
    wire.OP_BATCH_ADD: SlotState._batch_add,
    wire.OP_BATCH_DONE: SlotState._batch_done,
}

__all__ = ["Channel", "Conv", "SlotState", "INFO_FIELDS", "M_CHANNEL", "M_CTYPE", "M_MID"]
