"""Rebuilding a lost slot table from what the replicas hold (pure, no I/O).

The slot table lives only in etcd (``slots``). If that key is lost (etcd data wiped,
restored from an old backup, deleted by hand) while the nodes still hold the slots'
logs, treating the cluster as new would restart every term at 1 (replicas that
promised higher terms refuse the new leaders: every slot stuck) and place slots on
nodes that never held them (served empty, while the old holders drop the data).

Instead the controller asks every live node what it holds (``Holding`` per slot:
the highest term it knows, the term and index of its last log entry) and
``rebuild()`` derives a table from those reports:

* a slot's voters are its holders, most up-to-date first, up to ``replicaCount``;
  the most up-to-date one leads (its log has every entry a majority acknowledged,
  and the leader's recovery collects a majority anyway before serving);
* its term is one above the highest term any holder knows, so no replica refuses it;
* the version is one above the highest version any node saw, so watchers never see
  the table version go down.

It refuses (returns the reasons, writes nothing) while the reports cannot prove the
data is all there: a slot no live node holds (every slot gets a barrier entry when
its first leader takes over, so in a cluster with data every slot has some), or held
by fewer nodes than a majority of ``replicaCount`` (an acknowledged entry is on a
majority of its voters, so a minority may all lack it). The controller retries at
every pass: it succeeds once enough holders are back (or an operator restores etcd).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from coordinator.slot_table import SlotInfo, SlotTable


class Holding(NamedTuple):
    """What one node holds of one slot."""

    term: int  # the highest term the replica knows (promised or seen)
    last_term: int  # term of its last log entry
    last_index: int  # index of its last log entry


class NodeReport(NamedTuple):
    """One node's answer: the slot-table version it last saw and its holdings."""

    version: int
    slots: Mapping[int, Holding]


def has_data(reports: Mapping[int, NodeReport]) -> bool:
    """Whether any node holds any slot's log (then the cluster is not new)."""
    return any(h.last_index > 0 or h.term > 0 for r in reports.values() for h in r.slots.values())


def rebuild(reports: Mapping[int, NodeReport], slot_count: int,
            replica_count: int) -> tuple[SlotTable | None, list[str]]:
    """A slot table derived from the live nodes' reports, or (None, reasons) to refuse."""
    holders: dict[int, list[tuple[Holding, int]]] = {s: [] for s in range(slot_count)}
    problems: list[str] = []
    for node, report in reports.items():
        for slot, h in report.slots.items():
            if not 0 <= slot < slot_count:
                problems.append(f"node {node} holds slot {slot}, outside cluster.slotCount {slot_count}")
                continue
            if h.last_index > 0 or h.term > 0:
                holders[slot].append((h, node))
    need = replica_count // 2 + 1
    missing = sorted(s for s, hs in holders.items() if not hs)
    if missing:
        problems.append(f"{len(missing)} slot(s) held by no live node: {missing[:8]}")
    short = sorted(s for s, hs in holders.items() if 0 < len(hs) < need)
    if short:
        problems.append(f"{len(short)} slot(s) held by fewer than {need} live node(s) "
                        f"(a majority of replicaCount {replica_count}): {short[:8]}")
    if problems:
        return None, problems
    slots = []
    led: dict[int, int] = {}
    for s in range(slot_count):
        ranked = sorted(holders[s], key=lambda hn: (hn[0].last_term, hn[0].last_index, -hn[1]), reverse=True)
        voters = [n for _h, n in ranked[:replica_count]]
        top = (ranked[0][0].last_term, ranked[0][0].last_index)
        # among equally up-to-date holders, the one leading fewest slots so far (leaders stay spread)
        leader = min((n for h, n in ranked if (h.last_term, h.last_index) == top), key=lambda n: (led.get(n, 0), n))
        led[leader] = led.get(leader, 0) + 1
        voters.remove(leader)
        voters.insert(0, leader)
        term = max(max(h.term, h.last_term) for h, _n in holders[s]) + 1
        slots.append(SlotInfo(s, leader=leader, replicas=voters, learners=[], term=term))
    version = max((r.version for r in reports.values()), default=0) + 1
    return SlotTable(slot_count, replica_count, slots, version), []
