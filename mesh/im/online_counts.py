"""Cluster-wide connection counts of uids, as the leader of each uid's slot keeps them (pure).

``user.onlinestatus`` reports, with each connect and disconnect, how many connections
the uid has of that device flag and in all, over the whole cluster, as WuKongIM does
(it counts where the uid's slot is led). This table is that count for the slots this
node leads: per slot, uid -> {(node, conn): device flag}. It is soft state: a table
belongs to one leadership term of its slot and is dropped when the term changes, then
seeded again per uid (from presence) on its next event (uids left with no connection are
forgotten the same way, by ``forget_empty`` a while later, when presence has settled); connections of nodes that are
no longer alive are dropped when the uid's count is taken. No I/O here; the shell is
``mesh.im.online_status``.
"""
from __future__ import annotations

from collections.abc import Container, Iterable

Conns = dict[tuple[int, int], int]  # (node, conn) -> device flag


class OnlineCounts:
    def __init__(self) -> None:
        self._slots: dict[int, tuple[int, dict[str, Conns]]] = {}  # slot -> (term, uid -> conns)

    def _table(self, slot: int, term: int) -> dict[str, Conns]:
        got = self._slots.get(slot)
        if got is None or got[0] != term:
            got = (term, {})
            self._slots[slot] = got
        return got[1]

    def needs_seed(self, slot: int, term: int, uid: str) -> bool:
        """True when this term's table knows nothing of ``uid`` yet (seed it before ``apply``)."""
        return uid not in self._table(slot, term)

    def seed(self, slot: int, term: int, uid: str, conns: Iterable[tuple[int, int, int]]) -> None:
        """The uid's connections as presence lists them, (node, conn, device flag); a no-op when
        the uid is already known (a concurrent seed finished first and events followed)."""
        table = self._table(slot, term)
        if uid not in table:
            table[uid] = {(node, conn): flag for node, conn, flag in conns}

    def apply(self, slot: int, term: int, uid: str, node: int, conn: int, device_flag: int, online: bool,
              alive: Container[int] | None = None) -> tuple[int, int]:
        """Record one connect or disconnect; returns (connections of that device flag, all connections)."""
        table = self._table(slot, term)
        conns = table.setdefault(uid, {})
        if online:
            conns[(node, conn)] = device_flag
        else:
            conns.pop((node, conn), None)
        if alive is not None:
            for key in [k for k in conns if k[0] not in alive]:
                del conns[key]
        flag_count = sum(1 for f in conns.values() if f == device_flag)
        return flag_count, len(conns)  # an emptied uid stays known until forget_empty

    def forget_empty(self, slot: int) -> int:
        """Drop uids with no connection from ``slot``'s table (they are seeded again when seen); returns how many."""
        got = self._slots.get(slot)
        if got is None:
            return 0
        empty = [u for u, c in got[1].items() if not c]
        for u in empty:
            del got[1][u]
        return len(empty)

    def size(self) -> int:
        return sum(len(t) for _term, t in self._slots.values())
