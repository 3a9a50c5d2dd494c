"""The narrow interfaces between the client gateway and the rest of the node.

* ``MessageSink`` takes a SEND (already decrypted and checked) and later calls back
  with the outcome for the SENDACK. It must keep the order of the requests one
  session submits.
* ``Authenticator`` checks a CONNECT's token.
* ``Delivery`` is one committed message as the gateway needs it to build RECV for
  each local session of a recipient.
* ``SessionHost`` is what one ``Session`` needs from the gateway that holds it
  (``Gateway`` implements it): settings, the login and close bookkeeping, SEND and
  token checks, the RECV retry timer, and metrics.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.session import Session

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


class SessionHost(Protocol):
    """What a ``Session`` asks of the gateway that holds it; ``Gateway`` implements it."""

    # settings (read when needed, so a session sees the node's configuration)
    node_id: int
    cfg_token_auth: bool  # tokenAuthOn
    cfg_manager_token: str  # managerToken (the manager uid's token)
    cfg_disable_encryption: bool
    cfg_disable_jsonrpc: bool
    max_pending_frames: int  # conn.maxPendingFrames: outbound frames queued before a client counts as slow
    retry_interval: float  # messageRetry.interval: seconds before an unacknowledged RECV is resent
    retry_max: int  # messageRetry.maxCount: resends before giving up (0: no resends)

    # the session's life
    def on_authenticated(self, s: Session) -> None:
        """CONNECT succeeded: index the session by uid, apply the login's kicks, report it online."""

    def on_closed(self, s: Session, was_authed: bool) -> None:
        """The session closed: forget it (and report it offline when it was authenticated)."""

    def close_later(self, s: Session, delay: float, why: str) -> None:
        """Close ``s`` after ``delay`` seconds (after a kick's DISCONNECT)."""

    # what a client asks for
    def authenticate(self, uid: str, device_flag: int, token: str) -> AuthResult:
        """Check a CONNECT's token (never raises: a failure is a SystemError result)."""

    def submit(self, req: SendRequest, done: Callable[[SendResult], None]) -> None:
        """Hand a SEND on; ``done`` is called once with its outcome (never raises)."""

    # RECVs waiting for a RECVACK
    def retry_started(self, s: Session) -> None:
        """``s`` holds unacknowledged RECVs: resend them on the retry timer."""

    def retry_done(self, s: Session) -> None:
        """``s`` holds no unacknowledged RECV any more."""

    # metrics
    def metrics_bytes_in(self, s: Session, n: int) -> None: ...

    def metrics_bytes_out(self, s: Session, n: int) -> None: ...

    def metrics_frame_in(self, s: Session, ptype: int) -> None: ...

    def metrics_json_in(self, s: Session, method: str) -> None: ...

    def count_reject(self, s: Session | None, kind: str) -> None: ...

    def count_retry(self) -> None: ...

    def count_retry_exhausted(self) -> None: ...

    def observe_send_latency(self, seconds: float) -> None: ...
