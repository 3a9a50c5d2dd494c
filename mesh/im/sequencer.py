"""The message sequencer's per-slot state on a slot leader, for one leadership.

Pure (no gevent, no I/O). ``Messages`` keeps one ``Sequencer`` per slot this node
leads and replaces it, empty, each time a leadership of the slot becomes ready
(``Messages.on_leader_ready``, called by the replica before it accepts any proposal of
that leadership): what it holds is only valid while the same leader keeps proposing.

* ``next_seq``: the next seq of a channel. The slot state knows the last *applied* seq;
  messages proposed but not yet committed are counted here, so a burst of sends to one
  channel gets gap-free, distinct seqs before any of them commits.
* ``in_flight``: sends proposed and not yet committed or failed, by
  (channel, type, from_uid, client_msg_no), so a retry of a send still in flight gets
  the same message id and seq instead of a second message. The writer removes an
  entry when its proposal resolves (``done``).
"""
from __future__ import annotations

from typing import Any, Protocol

ChannelKey = tuple[str, int]  # (stored channel id, channel type)
SendKey = tuple[str, int, str, str]  # (stored channel id, channel type, from_uid, client_msg_no)


class AppliedSeqs(Protocol):
    def last_seq(self, channel_id: str, channel_type: int) -> int:
        """The last seq of a channel among the applied (committed) entries."""


class Sequencer:
    __slots__ = ("term", "leader_seq", "in_flight")

    def __init__(self, term: int) -> None:
        self.term = term  # the leader's term this state belongs to
        self.leader_seq: dict[ChannelKey, int] = {}  # channel -> last seq handed out by this leader
        self.in_flight: dict[SendKey, Any] = {}  # send -> (result, message id, seq) until it resolves

    def next_seq(self, key: ChannelKey, applied: AppliedSeqs) -> int:
        """Hand out the channel's next seq (after the applied ones and the ones handed out before)."""
        seq = (self.leader_seq.get(key) or applied.last_seq(key[0], key[1])) + 1
        self.leader_seq[key] = seq
        return seq

    def pending(self, key: SendKey) -> Any:
        """(result, message id, seq) of the same send still in flight, or None."""
        return self.in_flight.get(key)

    def add(self, key: SendKey, value: Any) -> None:
        self.in_flight[key] = value

    def done(self, key: SendKey) -> None:
        """The send's proposal committed or failed: a retry is answered from the slot state (or sent anew)."""
        self.in_flight.pop(key, None)
