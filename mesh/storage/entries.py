"""The log entry, named: what one slot's replicated log holds, and the layout of a message row.

A log entry is ``Entry(idx, term, kind, data)``:

* ``idx``: its position in the slot's log (1, 2, ...; 0 means "before the first");
* ``term``: the term of the leader that created it;
* ``kind``: ``KIND_NOOP`` (a new leader's barrier, ``data`` is None), ``KIND_MSG`` (one chat
  message, ``data`` is a message row) or ``KIND_OP`` (a metadata operation, ``data`` is
  ``[op, args]`` with ``op`` one of ``mesh.net.wire``'s ``OP_*`` names);
* ``data``: as above.

``Entry`` is a NamedTuple, so it packs to the same msgpack array as the plain
``(idx, term, kind, data)`` tuple it replaces, in the write-ahead log and on the wire;
code that receives entries from msgpack gets plain lists and may wrap them with
``Entry(*e)``.

A message row (the ``data`` of a MSG entry) is a list of twelve fields; the ``M_*``
constants below are their positions. Rows are stored column by column in DuckDB
(``mesh.storage.store``), so the order is part of the on-disk format: never reorder.
"""
from __future__ import annotations

from typing import Any, NamedTuple

KIND_NOOP = 0  # a leader's barrier
KIND_MSG = 1  # a chat message: data is a message row
KIND_OP = 2  # a metadata operation: data is [op, args]


class Entry(NamedTuple):
    idx: int
    term: int
    kind: int
    data: Any


# Message row: [channel_id, channel_type, seq, message_id, from_uid, client_msg_no, timestamp, flags, setting,
#               expire, topic, payload]
(M_CHANNEL, M_CTYPE, M_SEQ, M_MID, M_FROM, M_CMN, M_TS, M_FLAGS, M_SETTING, M_EXPIRE, M_TOPIC,
 M_PAYLOAD) = range(12)
MSG_FIELDS = 12
