"""WuKongIM's channel model as pure rules: channel types, person-channel ids, send permission.

* A person chat between ``a`` and ``b`` is stored under a fake channel id: ``a@b`` if
  ``crc32(a) > crc32(b)`` else ``b@a`` (ties fall to the second form, as in
  WuKongIM). Uids never contain ``@``, so the pair is recovered by splitting.
* Send permission, in WuKongIM v2.2.5's order (``internal/service/permission.go``):
  the sender's global ``send_ban`` on its own person channel (25, client sends only);
  the target channel's ``ban`` (19) and ``disband`` (24), skipped for the public types
  (customer service, info, visitors, agent); public types pass; an agent channel
  passes for its two uids, a visitors channel for its visitor; system senders (the
  system uid, and HTTP sends, which WuKongIM makes as the system device) pass; person
  chats: the receiver's deny list (4) and, when ``whitelistOffOfPerson`` is false,
  its allow list (13); other channels: deny list (4), not a subscriber (3, also for a
  channel that does not exist), a non-empty allow list without the sender (13).
  ``ban`` on a user's own person channel blocks that user's login (CONNACK 19), not
  messages.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from coordinator.slot_table import CMD_SUFFIX
from gateway import wkproto as wk

PERSON, GROUP, CUSTOMER_SERVICE, COMMUNITY, COMMUNITY_TOPIC, INFO, DATA, TEMP, LIVE, VISITORS, AGENT, AGENT_GROUP = \
    range(1, 13)
KNOWN_TYPES = frozenset(range(1, 13))
NO_CONVERSATION = frozenset({DATA, TEMP, LIVE})
SYSTEM_UID = "____system"
SYSTEM_DEVICE = 99
SPECIAL = ("@", "#", "&")


def is_special(text: str) -> bool:
    return any(c in text for c in SPECIAL)


def crc32(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def fake_channel_id(a: str, b: str) -> str:
    """The stored id of the person chat between uids ``a`` (sender) and ``b``."""
    if crc32(a) > crc32(b):
        return f"{a}@{b}"
    return f"{b}@{a}"


def person_peer(fake_id: str, uid: str) -> str:
    """In the person chat ``fake_id``, the uid that is not ``uid`` (``uid`` itself for a self chat)."""
    a, _, b = fake_id.partition("@")
    if not b:
        return a
    return b if a == uid else a


def person_pair(fake_id: str) -> list[str]:
    a, _, b = fake_id.partition("@")
    return [a] if not b or a == b else [a, b]


def fnv1a64(text: str) -> int:
    """FNV-1a, 64 bits, of the UTF-8 text (WuKongIM's ``HashWithString``)."""
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def subscribers_cmd_channel(uids: list[str]) -> str:
    """The temp CMD channel of a ``/message/send`` to ``subscribers``: FNV-1a-64 of the uids in request order."""
    return f"{fnv1a64(','.join(uids))}{CMD_SUFFIX}"


def is_cmd(channel_id: str) -> bool:
    """A CMD shadow channel (``<storage id>____cmd``)?"""
    return channel_id.endswith(CMD_SUFFIX)


def cmd_base(channel_id: str) -> str:
    """The id without the CMD suffix (unchanged when there is none)."""
    return channel_id[: -len(CMD_SUFFIX)] if channel_id.endswith(CMD_SUFFIX) else channel_id


def cmd_channel(channel_id: str) -> str:
    """The CMD shadow of ``channel_id`` (the suffix is never doubled)."""
    return channel_id if channel_id.endswith(CMD_SUFFIX) else channel_id + CMD_SUFFIX


def agent_channel_id(from_uid: str, channel_id: str) -> str:
    """The stored id of an agent chat (type 11): ``<user>@<agent>``.

    A client addresses the agent's uid and the chat is ``<sender>@<agent>``, as in
    WuKongIM; an id that already holds ``@`` is the stored id itself (how the agent, or
    an HTTP send, replies into a user's chat: Skein's addition).
    """
    return channel_id if "@" in channel_id else f"{from_uid}@{channel_id}"


def visitor_of(channel_type: int, channel_id: str) -> str:
    """The visitor uid of a visitors (10) or customer-service (3) channel, else ""."""
    if channel_type == VISITORS:
        return channel_id
    if channel_type == CUSTOMER_SERVICE and "|" in channel_id:
        return channel_id.partition("|")[0]
    return ""


def storage_id(channel_type: int, channel_id: str, from_uid: str) -> str:
    """Where a message addressed to ``channel_id`` by ``from_uid`` is stored.

    A person chat is stored under its fake id, an agent chat under ``<user>@<agent>``;
    a CMD address (``<id>____cmd``, what ``/message/send`` with ``sync_once`` makes)
    under the shadow of the stored id (``b@a____cmd`` for a person chat).
    """
    if channel_id.endswith(CMD_SUFFIX) and channel_type in (PERSON, AGENT):
        return storage_id(channel_type, cmd_base(channel_id), from_uid) + CMD_SUFFIX
    if channel_type == PERSON:
        return fake_channel_id(from_uid, channel_id)
    if channel_type == AGENT:
        return agent_channel_id(from_uid, channel_id)
    return channel_id


@dataclass(frozen=True)
class PersonFlags:
    """A user's own person channel ``(uid, 1)``: flags and lists that govern chats with them."""

    ban: int = 0
    send_ban: int = 0
    deny: frozenset[str] = field(default_factory=frozenset)
    allow: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ChannelView:
    """What the permission check needs of the target channel."""

    exists: bool = False
    ban: int = 0
    disband: int = 0
    subscribers: frozenset[str] | set[str] = frozenset()
    deny: frozenset[str] | set[str] = frozenset()
    allow: frozenset[str] | set[str] = frozenset()


PUBLIC_TYPES = frozenset({CUSTOMER_SERVICE, INFO, VISITORS, AGENT})


def check_send(channel_type: int, channel_id: str, from_uid: str, channel: ChannelView | None,
               sender: PersonFlags | None, receiver: PersonFlags | None, *, system: bool = False,
               person_whitelist: bool = False, system_uids: frozenset[str] = frozenset({SYSTEM_UID})) -> int:
    """The WKProto reason code for a send (1 = allowed).

    ``channel`` is the stored channel (the fake id's for a person chat); ``sender`` and
    ``receiver`` are the person-channel flags of the sender and (person chats) the peer;
    ``system`` skips the sender checks (system uid, HTTP sends).
    """
    if channel_type not in KNOWN_TYPES:
        return wk.REASON_NOT_SUPPORT_CHANNEL_TYPE
    if not system and sender is not None and sender.send_ban:
        return wk.REASON_SEND_BAN
    ch = channel or ChannelView()
    if channel_type not in PUBLIC_TYPES:
        if ch.ban:
            return wk.REASON_BAN
        if ch.disband:
            return wk.REASON_DISBAND
    if channel_type in (INFO, CUSTOMER_SERVICE):
        return wk.REASON_SUCCESS
    if channel_type == AGENT and from_uid in channel_id.split("@"):
        return wk.REASON_SUCCESS
    if channel_type == VISITORS and channel_id == from_uid:
        return wk.REASON_SUCCESS
    if system or from_uid in system_uids:
        return wk.REASON_SUCCESS
    if channel_type == PERSON:
        if channel_id in system_uids or receiver is None:
            return wk.REASON_SUCCESS
        if from_uid in receiver.deny:
            return wk.REASON_IN_BLACKLIST
        if person_whitelist and from_uid not in receiver.allow:
            return wk.REASON_NOT_IN_WHITELIST
        return wk.REASON_SUCCESS
    if from_uid in ch.deny:
        return wk.REASON_IN_BLACKLIST
    if from_uid not in ch.subscribers:
        return wk.REASON_SUBSCRIBER_NOT_EXIST
    if ch.allow and from_uid not in ch.allow:
        return wk.REASON_NOT_IN_WHITELIST
    return wk.REASON_SUCCESS
