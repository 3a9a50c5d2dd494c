"""The narrow interfaces between the client gateway and the rest of the node.

* ``MessageSink`` takes a SEND (already decrypted and checked) and later calls back
  with the outcome for the SENDACK. It must keep the order of the requests one
  session submits.
* ``Authenticator`` checks a CONNECT's token.
* ``Delivery`` is one committed message as the gateway needs it to build RECV for
  each local session of a recipient.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

DEVICE_LEVEL_SLAVE = 0
DEVICE_LEVEL_MASTER = 1


@dataclass(slots=True)
class SendRequest:
    from_uid: str
    channel_id: str  # as the client addressed it (the peer's uid for a person chat)
    channel_type: int
    payload: bytes  # plaintext
    client_msg_no: str = ""
    client_seq: int = 0
    flags: int = 0  # WKProto header flags (NoPersist, RedDot, SyncOnce, DUP)
    setting: int = 0
    expire: int = 0
    topic: str = ""
    device_flag: int = 0
    device_id: str = ""
    conn: tuple[int, int] = (0, 0)  # (node id, connection id) of the sending connection
    received_at: float = 0.0


@dataclass(slots=True)
class SendResult:
    reason: int
    message_id: int = 0
    message_seq: int = 0


class MessageSink(Protocol):
    def submit(self, req: SendRequest, done: Callable[[SendResult], None]) -> None: ...


@dataclass(slots=True)
class AuthResult:
    reason: int  # 1 success, 2 auth fail, 19 ban, 15 system error
    device_level: int = DEVICE_LEVEL_MASTER


class Authenticator(Protocol):
    def authenticate(self, uid: str, device_flag: int, token: str) -> AuthResult: ...


@dataclass(slots=True)
class Delivery:
    message_id: int
    message_seq: int
    client_msg_no: str
    from_uid: str
    channel_id: str  # as the sender addressed it
    channel_type: int
    timestamp: int  # seconds
    payload: bytes  # plaintext
    flags: int = 0
    setting: int = 0
    expire: int = 0
    topic: str = ""
    committed_at: float = 0.0
    extra: dict = field(default_factory=dict)


class NoMessaging:
    """Sink used until a messaging layer is attached: every SEND fails with SystemError (15)."""

    def submit(self, req: SendRequest, done: Callable[[SendResult], None]) -> None:
        done(SendResult(15))
