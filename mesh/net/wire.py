"""The wire between nodes, named: every mesh method, broadcast topic and slot call.

Three kinds of names travel between nodes, and each has exactly one spelling here:

* **mesh methods**: addressed requests (``Mesh.request(peer, METHOD, payload)``),
  answered by the handler a node registered with ``Mesh.handle(METHOD, fn)``;
* **topics**: broadcasts (``Mesh.publish(TOPIC, payload)``), received by every
  ``Mesh.subscribe(TOPIC, fn)``;
* **slot calls**: keyed calls carried inside ``SLOT_CALL`` to the leader of the key's
  slot (``SlotRouter.call(key, CALL, args)``), served by ``SlotService.register(CALL, fn)``.

Payloads are msgpack arrays and maps; the NamedTuples below name the fields of the
positional ones (a NamedTuple packs to the same msgpack array as the plain tuple, so
the bytes on the wire do not change). Handlers are looked up by these names; no other
module spells a method, topic or call name as a string literal.
"""
from __future__ import annotations

from typing import Any, NamedTuple

# ---------------------------------------------------------------- transport internals
PING = "ping"  # payload None -> {"node": id, "instance": str, "pid": int}
PUB_REPLAY = "_pub_replay"  # PubReplay -> list of packed broadcasts still buffered
HEARTBEAT = "_hb"  # broadcast kind of the PUB heartbeat (payload: sender's clock)

# ---------------------------------------------------------------- replication (mesh methods)
REPL_APPEND = "repl.append"  # Append -> {"ok", "term", "last", ...}
REPL_APPEND_MANY = "repl.append_many"  # list[Append] -> list of answers, one per request
REPL_PREPARE = "repl.prepare"  # Prepare -> {"ok", "term", "last_index", "last_term"}
REPL_FETCH = "repl.fetch"  # Fetch -> list of entries
REPL_POSITIONS = "repl.positions"  # list[slot] -> {slot: [last_index, last_term]}
REPL_HOLDINGS = "repl.holdings"  # None -> {"version": int, "slots": {slot: [term, last_term, last_index]}}
REPL_STATUS = "repl.status"  # None -> list of per-slot info dicts
REPL_SYNC_FORCE = "repl.sync_force"  # None -> int (followers woken)

# ---------------------------------------------------------------- messaging (mesh methods, topics)
MSG_SEND = "msg.send"  # list of origin-batched send items -> list of results
MSG_DELIVER = "msg.deliver"  # topic: one delivery
MSG_DELIVER_MANY = "msg.deliver_many"  # topic: a list of deliveries
PERM_INVALIDATE = "perm.invalidate"  # list[uid] -> None (drop cached person flags)
SYSUID_CHANGED = "sysuid.changed"  # topic: [log index, every stored system uid]
EVT_DELIVER = "evt.deliver"  # topic: [recipients, event id, event type, timestamp, data JSON text]

# ---------------------------------------------------------------- gateway (topics, mesh methods)
GW_LOGIN = "gw.login"  # topic: a login that may kick other devices (see Gateway.apply_login)
GW_KICK = "gw.kick"  # topic: Kick
GW_CONNZ = "gw.connz"  # Connz -> {"total", "connections": [...]}
GW_CONN_CLOSE = "gw.conn_close"  # ConnClose -> bool (the connection was found on that node)

# ---------------------------------------------------------------- slot calls and management
SLOT_CALL = "slot.call"  # SlotCall -> the call's answer
MGR_STATS = "mgr.stats"  # None -> this node's stats for the manager page
TRANSFER_CONTROLLER = "transfer_controller"  # target node id -> bool (sent to the controller)
RESIGN_CONTROLLER = "resign_controller"  # None -> bool (sent to the controller: a new election)
ELECT_SLOT = "elect_slot"  # [slot, node to move the leadership off] -> {"moved", "leader", "term", "reason"}

# Slot calls (carried inside SLOT_CALL; the leader of the key's slot serves them).
USER_SET_TOKEN = "user.set_token"
USER_GET_TOKEN = "user.get_token"
USER_QUIT = "user.quit"
USER_ONLINE = "user.online"  # on the uid's slot: logins/logouts -> cluster-wide (flag count, total) of each
CH_INFO = "ch.info"
CH_SUBSCRIBERS = "ch.subscribers"
CH_LIST = "ch.list"
CH_GET = "ch.get"
CONV_ENSURE = "conv.ensure"
CONV_REMOVE = "conv.remove"
CONV_SET = "conv.set"
CONV_LIST = "conv.list"
MSG_SYNC = "msg.sync"
MSG_MAX_SEQ = "msg.max_seq"
MSG_LOOKUP = "msg.lookup"
MSG_SUMMARIES = "msg.summaries"
PERM_PERSON = "perm.person"
CMD_ROWS = "cmd.rows"  # on the CMD channel's slot: make the recipients' CMD rows
CMD_ENSURE = "cmd.ensure"  # on a uid slot: insert-if-absent CMD rows
CMD_LIST = "cmd.list"  # on the uid's slot: the uid's CMD rows
CMD_SYNCED = "cmd.synced"  # on the uid's slot: remember what /message/sync handed out
CMD_ACK = "cmd.ack"  # on the uid's slot: /message/syncack
CMD_READ = "cmd.read"  # on the uid's slot: a master device's RECVACK of a CMD
SYSUID_ADD = "sysuid.add"  # on the system-uid key's slot
SYSUID_REMOVE = "sysuid.remove"
SYSUID_LIST = "sysuid.list"
EVT_APPEND = "evt.append"  # on the message's channel slot: /message/event
EVT_SYNC = "evt.sync"  # on the message's channel slot: /message/eventsync
BATCH_ADD = "batch.add"  # on the from_uid's slot: queue a /message/sendbatch in the slot's log


# ---------------------------------------------------------------- positional payloads
class PubReplay(NamedTuple):
    first: int  # first broadcast seq wanted
    upto: int  # last broadcast seq wanted


class Append(NamedTuple):
    slot: int
    term: int
    leader: int
    prev_idx: int
    prev_term: int
    entries: list  # list of Entry (idx, term, kind, data)
    commit: int  # the leader's commit index


class Prepare(NamedTuple):
    slot: int
    term: int
    leader: int


class Fetch(NamedTuple):
    slot: int
    term: int
    first: int
    last: int


class SlotCall(NamedTuple):
    slot: int
    method: str  # one of the slot-call names above
    args: Any


class Kick(NamedTuple):
    uid: str
    device_flags: list[int] | None  # None: every device
    delay: float  # seconds before the close
    text: str  # the DISCONNECT reason text


class ConnClose(NamedTuple):
    uid: str  # "" matches any uid
    conn_id: int
    kick: bool  # True: DISCONNECT first, close shortly after (/conn/kick); False: close now (/conn/remove)


class Connz(NamedTuple):
    offset: int
    limit: int
    sort: str
    uid: str


# ---------------------------------------------------------------- log operations
# The ``op`` of an OP log entry (``[op, args]``): replicated to every replica of the slot
# and applied there by ``SlotState``; persisted in the log, so a name never changes.
OP_USER_TOKEN = "user.token"
OP_USER_QUIT = "user.quit"
OP_CHANNEL_INFO = "channel.info"
OP_CHANNEL_SUBSCRIBERS = "channel.subscribers"
OP_CHANNEL_LIST = "channel.list"
OP_CHANNEL_CONV_ENSURED = "channel.conv_ensured"
OP_CHANNEL_CONV_FORGET = "channel.conv_forget"
OP_CONV_ENSURE = "conv.ensure"
OP_CONV_REMOVE = "conv.remove"
OP_CONV_SET = "conv.set"
OP_CMD_ENSURE = "cmd.ensure"
OP_CMD_READ = "cmd.read"
OP_CMD_SYNCED = "cmd.synced"
OP_CMD_ACK = "cmd.ack"
OP_SYSUID = "sysuid"
OP_EVENT = "event"
OP_BATCH_ADD = "batch.add"  # a /message/sendbatch accepted: {"id", "from", "flags", "subs", "payload"}
OP_BATCH_DONE = "batch.done"  # its messages before "done" are sent: {"id", "done"}
