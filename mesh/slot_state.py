"""The replicated state of one slot, as a deterministic state machine (pure logic).

Every change is an operation ``(op, args)`` applied in log order on every replica of
the slot, so replicas that applied the same operations hold the same state. This
module holds users and their devices (token and device level per device flag);
channels, subscribers, lists, conversations and message sequence numbers join it as
the messaging layer grows.
"""
from __future__ import annotations

from typing import Any


class SlotState:
    def __init__(self, slot_id: int) -> None:
        self.slot_id = slot_id
        # uid -> device flag -> [token, device level]
        self.devices: dict[str, dict[int, list]] = {}

    # ---- reads
    def token(self, uid: str, device_flag: int) -> tuple[str, int] | None:
        d = self.devices.get(uid, {}).get(device_flag)
        return (d[0], d[1]) if d else None

    # ---- writes
    def apply(self, op: str, args: dict) -> Any:
        fn = getattr(self, "_op_" + op.replace(".", "_"), None)
        if fn is None:
            raise ValueError(f"unknown slot operation {op!r}")
        return fn(args)

    def _op_user_token(self, a: dict) -> None:
        self.devices.setdefault(a["uid"], {})[int(a["device_flag"])] = [a["token"], int(a["device_level"])]

    def _op_user_quit(self, a: dict) -> None:
        flags = a["device_flags"]
        devs = self.devices.get(a["uid"])
        if not devs:
            return
        for f in flags:
            d = devs.get(int(f))
            if d is not None:
                d[0] = ""  # the device must authenticate again

    def to_snapshot(self) -> dict:
        return {"devices": self.devices}

    @classmethod
    def from_snapshot(cls, slot_id: int, snap: dict) -> SlotState:
        s = cls(slot_id)
        s.devices = {uid: {int(f): list(v) for f, v in d.items()} for uid, d in snap.get("devices", {}).items()}
        return s
