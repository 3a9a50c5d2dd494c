"""The slot table and the pure rules that recompute it.

A key (channel id, uid) hashes to a slot with ``crc32(key) % slotCount`` (WuKongIM's
rule); a CMD shadow channel ``<id>____cmd`` lives in the slot of ``<id>``, so its
recipients (the original channel's subscribers) are in the same slot state.
Each slot has a leader, voting replicas (the leader among them), learners
(replicas still copying data, not counted for the majority) and a term that grows by
one whenever the slot's leader or its set of voters changes.

``plan()`` takes the current table, the live nodes and what each slot leader last
reported (``SlotStatus``) and returns the next table, changing as little as possible.
Safety rules it follows (see docs/ARCHITECTURE.md, "Slot table changes"):

* a slot whose leader died gets a new leader at once (any live voter may take over:
  the new leader's recovery collects a majority before serving);
* the voter set changes by one node at a time, and only once the slot leader has
  reported the current term established (its barrier entry committed), so any two
  consecutive voter sets share a majority;
* leadership moves (drain, balance) only to voters the leader reports in sync;
* a dead voter is replaced (learner added, caught up, promoted) before it is dropped;
  it is dropped without replacement only when an operator removed the node.

No I/O here; the controller writes the result to etcd.
"""
from __future__ import annotations

import copy
import json
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CMD_SUFFIX = "____cmd"


def slot_of(key: str, slot_count: int) -> int:
    """WuKongIM's slot rule: crc32 (IEEE) of the UTF-8 key modulo the slot count.

    A key ending in ``CMD_SUFFIX`` (a CMD shadow channel) hashes without the suffix.
    """
    if key.endswith(CMD_SUFFIX):
        key = key[: -len(CMD_SUFFIX)]
    return zlib.crc32(key.encode("utf-8")) % slot_count


@dataclass
class SlotInfo:
    id: int
    leader: int = 0
    replicas: list[int] = field(default_factory=list)  # voters, the leader among them
    learners: list[int] = field(default_factory=list)
    term: int = 0

    def members(self) -> list[int]:
        return self.replicas + self.learners

    def to_json(self) -> dict:
        return {"id": self.id, "leader": self.leader, "replicas": list(self.replicas),
                "learners": list(self.learners), "term": self.term}

    @classmethod
    def from_json(cls, d: Mapping) -> SlotInfo:
        return cls(id=int(d["id"]), leader=int(d.get("leader", 0)),
                   replicas=[int(x) for x in d.get("replicas", [])],
                   learners=[int(x) for x in d.get("learners", [])], term=int(d.get("term", 0)))


@dataclass
class SlotStatus:
    """What a slot leader reports about its slot (etcd key ``slotstate/<id>``)."""

    term: int
    leader: int
    ready: bool = False  # recovery done and the barrier of this term committed
    in_sync: frozenset[int] = frozenset()  # members whose log reaches the commit index
    last_index: int = 0
    stuck: bool = False  # not ready, or no answers from a majority, for too long: move the slot

    def to_json(self) -> dict:
        return {"term": self.term, "leader": self.leader, "ready": self.ready,
                "in_sync": sorted(self.in_sync), "last_index": self.last_index, "stuck": self.stuck}

    @classmethod
    def from_json(cls, d: Mapping) -> SlotStatus:
        return cls(int(d["term"]), int(d["leader"]), bool(d.get("ready")),
                   frozenset(int(x) for x in d.get("in_sync", [])), int(d.get("last_index", 0)),
                   bool(d.get("stuck")))


@dataclass
class SlotTable:
    slot_count: int
    replica_count: int
    slots: list[SlotInfo]
    version: int = 0

    @classmethod
    def empty(cls, slot_count: int, replica_count: int) -> SlotTable:
        return cls(slot_count, replica_count, [SlotInfo(i) for i in range(slot_count)], 0)

    def to_bytes(self) -> bytes:
        return json.dumps({"version": self.version, "slotCount": self.slot_count,
                           "replicaCount": self.replica_count,
                           "slots": [s.to_json() for s in self.slots]},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> SlotTable:
        d = json.loads(raw)
        return cls(int(d["slotCount"]), int(d["replicaCount"]),
                   [SlotInfo.from_json(s) for s in d["slots"]], int(d.get("version", 0)))

    def copy(self) -> SlotTable:
        return copy.deepcopy(self)

    def leader_counts(self, nodes: Iterable[int] = ()) -> dict[int, int]:
        counts = {n: 0 for n in nodes}
        for s in self.slots:
            if s.leader:
                counts[s.leader] = counts.get(s.leader, 0) + 1
        return counts

    def member_counts(self, nodes: Iterable[int] = ()) -> dict[int, int]:
        counts = {n: 0 for n in nodes}
        for s in self.slots:
            for m in s.members():
                counts[m] = counts.get(m, 0) + 1
        return counts

    def slots_led_by(self, node: int) -> list[int]:
        return [s.id for s in self.slots if s.leader == node]

    def slots_of(self, node: int) -> list[int]:
        return [s.id for s in self.slots if node in s.members()]

    def same_layout(self, other: SlotTable) -> bool:
        return [s.to_json() for s in self.slots] == [s.to_json() for s in other.slots]


Position = tuple[int, int]  # (last log term, last log index) of one replica of one slot

STUCK_AFTER = 5.0  # seconds a slot's leader may stay not ready before the controller moves the slot


def stuck_slots(table: SlotTable, status: Mapping[int, SlotStatus], seen: dict[int, tuple[int, int, float]],
                now: float, live: Iterable[int], bound: float = STUCK_AFTER) -> set[int]:
    """Slots whose live leader has not served for longer than ``bound``: to be moved.

    ``seen[slot]`` = (term, leader, since): when this (term, leader) was first seen
    without a report; the caller keeps it between rounds (this function updates it). A
    leader that reports itself stuck (not ready without progress, or without a
    majority's answers, for its own bound, or named at a term it may not lead) counts
    at once; one that reports itself not stuck is trusted (its recovery may take long
    on a big log); one that reports nothing for ``bound`` seconds is stuck.
    """
    live_set = set(live)
    out: set[int] = set()
    for s in table.slots:
        if not s.leader or s.leader not in live_set:
            seen.pop(s.id, None)
            continue
        st = status.get(s.id)
        current = st is not None and st.term == s.term and st.leader == s.leader
        if current and st.stuck:
            out.add(s.id)
            continue
        if current:
            seen.pop(s.id, None)
            continue
        first = seen.get(s.id)
        if first is None or first[:2] != (s.term, s.leader):
            seen[s.id] = (s.term, s.leader, now)
        elif now - first[2] > bound:
            out.add(s.id)
    return out


class _Ctx:
    def __init__(self, table: SlotTable, live: set[int], drain: set[int], removed: set[int],
                 no_lead: set[int], status: Mapping[int, SlotStatus],
                 positions: Mapping[int, Mapping[int, Position]], fresh: bool) -> None:
        self.table = table
        self.live = live
        self.drain = drain  # live nodes that must hand everything over
        self.removed = removed  # nodes an operator removed (live or not)
        self.leaving = drain | removed
        self.eligible = sorted(live - self.leaving)
        self.no_lead = no_lead - self.leaving  # stepping down for a restart: keep data, lead nothing
        self.leadable = [n for n in self.eligible if n not in self.no_lead]
        self.status = status
        self.positions = positions
        self.fresh = fresh
        self.changed: set[int] = set()  # slots whose leader or voters changed this round
        self.target = min(table.replica_count, len(self.eligible))

    def st(self, s: SlotInfo) -> SlotStatus | None:
        st = self.status.get(s.id)
        if st is None or st.term != s.term or st.leader != s.leader:
            return None
        return st

    def ready(self, s: SlotInfo) -> bool:
        if self.fresh:
            return True
        st = self.st(s)
        return bool(st and st.ready)

    def in_sync(self, s: SlotInfo, node: int) -> bool:
        if self.fresh or node == s.leader:
            return True
        st = self.st(s)
        return bool(st and node in st.in_sync)


def plan(table: SlotTable, live: Iterable[int], *, draining: Iterable[int] = (),
         removed: Iterable[int] = (), no_lead: Iterable[int] = (),
         status: Mapping[int, SlotStatus] | None = None,
         positions: Mapping[int, Mapping[int, Position]] | None = None,
         fresh: bool = False, max_copies: int = 8, stuck: Iterable[int] = ()) -> SlotTable:
    """The next slot table (version + 1 if anything changed).

    ``draining``: live nodes handing their slots over before leaving.
    ``removed``: nodes an operator removed; dropped from replica sets even unreplaced.
    ``no_lead``: nodes about to restart: they keep their replicas but lead nothing.
    ``status[slot]``: the slot leader's last report, used only if it matches the
    slot's current term and leader.
    ``positions[slot][node]``: (last term, last index), to pick the most up-to-date
    voter when a leader died.
    ``fresh``: no slot holds data yet (a new cluster): members join as voters.
    ``max_copies``: most slots copying to a learner at once.
    ``stuck``: slots whose leader is alive but does not serve (``stuck_slots``): they get
    a new term, with another live voter as leader when there is one.
    """
    live_set = set(live)
    new = table.copy()
    ctx = _Ctx(new, live_set, set(draining) & live_set, set(removed), set(no_lead), status or {},
               positions or {}, fresh)

    for s in new.slots:
        _ensure_leader(ctx, s)
    for sid in sorted(set(stuck)):
        s = new.slots[sid] if 0 <= sid < len(new.slots) else None
        if s is not None and s.id not in ctx.changed and s.leader:
            others = [n for n in s.replicas if n in ctx.live and n != s.leader and n not in ctx.removed]
            _set_leader(ctx, s, _best(ctx, s, others) if others else s.leader)
    for s in new.slots:
        if s.id not in ctx.changed and s.leader and ctx.ready(s):
            _one_voter_change(ctx, s)
    copies = sum(1 for s in new.slots if s.learners)
    for s in new.slots:
        copies = _fill_members(ctx, s, copies, max_copies)
    for s in new.slots:
        if (s.leader in ctx.leaving or s.leader in ctx.no_lead) and s.id not in ctx.changed and ctx.ready(s):
            targets = [n for n in s.replicas if n in ctx.leadable and ctx.in_sync(s, n)]
            if targets:
                _set_leader(ctx, s, _best(ctx, s, targets))
    _balance_leaders(ctx)
    if not fresh:
        _balance_members(ctx, copies, max_copies)

    if not new.same_layout(table):
        new.version = table.version + 1
    return new


def _set_leader(ctx: _Ctx, s: SlotInfo, node: int) -> None:
    s.leader = node
    s.term += 1
    ctx.changed.add(s.id)


def _best(ctx: _Ctx, s: SlotInfo, candidates: list[int]) -> int:
    counts = ctx.table.leader_counts(candidates)
    pos = ctx.positions.get(s.id, {})
    return max(candidates, key=lambda n: (n not in ctx.leaving, n not in ctx.no_lead,
                                          pos.get(n, (-1, -1)), -counts.get(n, 0), -n))


def _ensure_leader(ctx: _Ctx, s: SlotInfo) -> None:
    """A slot whose leader is gone gets a live voter at once (term + 1)."""
    if s.leader and s.leader in ctx.live and s.leader in s.replicas:
        return
    candidates = [n for n in s.replicas if n in ctx.live]
    if candidates:
        _set_leader(ctx, s, _best(ctx, s, candidates))
    elif s.leader:
        s.leader = 0  # every voter is down: the slot waits for one to come back
        ctx.changed.add(s.id)


def _one_voter_change(ctx: _Ctx, s: SlotInfo) -> None:
    """Promote one caught-up learner, or else drop one leaving, dead or surplus voter."""
    for n in sorted(s.learners):
        if n in ctx.live and n not in ctx.leaving and ctx.in_sync(s, n):
            s.learners.remove(n)
            s.replicas.append(n)
            s.term += 1
            ctx.changed.add(s.id)
            return
    active = [n for n in s.replicas if n in ctx.live and n not in ctx.leaving]
    counts = ctx.table.member_counts(ctx.eligible)
    r = ctx.table.replica_count

    def rank(n: int) -> tuple:
        return (n in ctx.removed, n not in ctx.live, n in ctx.drain, counts.get(n, 0), n)

    for n in sorted((n for n in s.replicas if n != s.leader), key=rank, reverse=True):
        others = len([a for a in active if a != n])
        if n in ctx.leaving:
            ok = others >= max(ctx.target, 1)  # drained or removed: leave once the rest is full
        else:
            ok = len(s.replicas) > r and others >= ctx.target  # dead or surplus: only when replaced
        if ok:
            s.replicas.remove(n)
            s.term += 1
            ctx.changed.add(s.id)
            return


def _fill_members(ctx: _Ctx, s: SlotInfo, copies: int, max_copies: int) -> int:
    """Drop learners that cannot serve; add learners (voters when fresh) up to the target."""
    s.learners = [n for n in s.learners if n in ctx.live and n not in ctx.leaving]
    if not s.leader and not (ctx.fresh and not s.replicas):
        return copies
    have = len([n for n in s.replicas if n in ctx.live and n not in ctx.leaving]) + len(s.learners)
    while have < ctx.target:
        options = [n for n in ctx.eligible if n not in s.members()]
        if not options:
            break
        counts = ctx.table.member_counts(ctx.eligible)
        pick = min(options, key=lambda n: (counts[n], n))
        if ctx.fresh:
            s.replicas.append(pick)
            if not s.leader:
                _set_leader(ctx, s, pick)
            elif s.id not in ctx.changed:
                s.term += 1
                ctx.changed.add(s.id)
        else:
            if copies >= max_copies and not s.learners:
                break
            if not s.learners:
                copies += 1
            s.learners.append(pick)
        have += 1
    return copies


def _balance_leaders(ctx: _Ctx) -> None:
    """Move leaderships along in-sync voter edges until counts differ by at most one."""
    elig = set(ctx.leadable)
    if len(elig) < 2:
        return
    for _ in range(ctx.table.slot_count * 2):
        counts = {n: c for n, c in ctx.table.leader_counts(ctx.leadable).items() if n in elig}
        hi, lo = max(counts.values()), min(counts.values())
        if hi - lo <= 1:
            return
        sinks = {n for n in counts if counts[n] <= hi - 2}
        for src in sorted(n for n in counts if counts[n] == hi):
            path = _transfer_path(ctx, src, sinks, elig)
            if path:
                for slot_id, dst in path:
                    slot = ctx.table.slots[slot_id]
                    if ctx.fresh and slot.id in ctx.changed:
                        slot.leader = dst  # a new slot: its first term is enough
                    else:
                        _set_leader(ctx, slot, dst)
                break
        else:
            return


def _transfer_path(ctx: _Ctx, src: int, sinks: set[int], elig: set[int]) -> list[tuple[int, int]]:
    """Shortest chain src -slot-> a -slot-> ... -> sink of allowed leadership moves."""
    prev: dict[int, tuple[int, int]] = {}
    seen = {src}
    q = deque([src])
    while q:
        a = q.popleft()
        for s in ctx.table.slots:
            if s.leader != a or not ctx.ready(s) or (s.id in ctx.changed and not ctx.fresh):
                continue
            for b in sorted(s.replicas):
                if b in seen or b not in elig or not ctx.in_sync(s, b):
                    continue
                seen.add(b)
                prev[b] = (a, s.id)
                if b in sinks:
                    path = []
                    node = b
                    while node != src:
                        parent, sid = prev[node]
                        path.append((sid, node))
                        node = parent
                    return list(reversed(path))
                q.append(b)
    return []


def _balance_members(ctx: _Ctx, copies: int, max_copies: int) -> None:
    """Start moving replicas from the fullest node to the emptiest, a few slots at a time."""
    elig = ctx.eligible
    if len(elig) < 2 or ctx.target == 0:
        return
    total = sum(min(len(s.replicas), ctx.table.replica_count) for s in ctx.table.slots)
    ceil_share = -(-total // len(elig))
    for _ in range(ctx.table.slot_count):
        if copies >= max_copies:
            return
        counts = {n: ctx.table.member_counts(elig).get(n, 0) for n in elig}
        hi = max(elig, key=lambda n: (counts[n], n))
        lo = min(elig, key=lambda n: (counts[n], n))
        if counts[hi] - counts[lo] <= 1 or counts[hi] <= ceil_share:
            return
        lcounts = ctx.table.leader_counts(elig)
        choices = [s for s in ctx.table.slots
                   if hi in s.replicas and lo not in s.members() and not s.learners and s.leader]
        if not choices:
            return
        s = min(choices, key=lambda s: (s.leader == hi, -lcounts.get(s.leader, 0), s.id))
        s.learners.append(lo)
        copies += 1


def check_invariants(table: SlotTable, live: Iterable[int]) -> list[str]:
    """Problems with a table (used by tests and logged by the controller)."""
    live_set = set(live)
    problems = []
    for s in table.slots:
        if s.leader and s.leader not in s.replicas:
            problems.append(f"slot {s.id}: leader {s.leader} is not a voter")
        if s.leader and s.leader not in live_set:
            problems.append(f"slot {s.id}: leader {s.leader} is not live")
        if len(set(s.members())) != len(s.members()):
            problems.append(f"slot {s.id}: duplicate member")
        if not s.leader:
            problems.append(f"slot {s.id}: no leader")
    return problems


def move_leader(table: SlotTable, slot_id: int, away_from: int, live: Iterable[int], *,
                status: Mapping[int, SlotStatus] | None = None, draining: Iterable[int] = (),
                removed: Iterable[int] = (), no_lead: Iterable[int] = ()) -> tuple[SlotTable | None, str]:
    """An operator's slot election (``POST /cluster/election``): ``slot_id``'s leadership off ``away_from``.

    Returns (the next table, "") with the slot led by another live voter the leader
    reports in sync (the one leading fewest slots) at term + 1, or (None, the reason)
    when it cannot move: the slot is not led by ``away_from``, its leader has not
    reported the current term established, or no other voter is in sync.
    """
    if not 0 <= slot_id < len(table.slots):
        return None, f"no slot {slot_id}"
    new = table.copy()
    live_set = set(live)
    ctx = _Ctx(new, live_set, set(draining) & live_set, set(removed), set(no_lead), status or {}, {}, False)
    s = new.slots[slot_id]
    if s.leader != away_from:
        return None, f"slot {slot_id} is led by node {s.leader}, not node {away_from}"
    if not ctx.ready(s):
        return None, f"slot {slot_id}'s leader has not reported term {s.term} established yet"
    targets = [n for n in s.replicas if n != away_from and n in ctx.leadable and ctx.in_sync(s, n)]
    if not targets:
        return None, f"slot {slot_id} has no other live voter in sync to lead it"
    counts = new.leader_counts(targets)
    target = min(targets, key=lambda n: (counts.get(n, 0), n))
    _set_leader(ctx, s, target)
    _swap_back(ctx, slot_id, target, away_from)
    new.version = table.version + 1
    return new, ""


def _swap_back(ctx: _Ctx, moved: int, target: int, away_from: int) -> None:
    """After an election, give ``away_from`` another of ``target``'s slots if the counts would need it.

    Otherwise the controller's balancing may hand the elected slot straight back.
    """
    counts = ctx.table.leader_counts(ctx.leadable)
    if away_from not in counts or max(counts.values()) - min(counts.values()) <= 1:
        return
    if counts.get(target, 0) - counts[away_from] < 2:
        return
    for o in ctx.table.slots:
        if o.id != moved and o.leader == target and away_from in o.replicas and ctx.ready(o) \
                and ctx.in_sync(o, away_from):
            _set_leader(ctx, o, away_from)
            return
