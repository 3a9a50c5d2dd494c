"""The pure replication core (mesh/replication/core.py, log.py): rules checked without I/O."""
from __future__ import annotations

import pytest

from mesh.net import wire
from mesh.replication.core import FOLLOWER, LEADER, RECOVERY_TIMEOUT, STUCK_AFTER, HardState, NotLeader, SlotCore
from mesh.replication.log import LogConflict, SlotLog


class Disk:
    def __init__(self, entries=()):
        self.entries = list(entries)

    def read_entries(self, first, last):
        return self.entries[max(first, 1) - 1:last]


def ents(*pairs, data=None):
    """Entries (idx, term, kind 1, data) from (idx, term) pairs."""
    return [(i, t, 1, data or f"d{i}.{t}") for i, t in pairs]


def core(node=1, entries=(), hard=HardState(), voters=(1, 2, 3)):
    d = Disk(entries)
    last = d.entries[-1][:2] if d.entries else (0, 0)
    c = SlotCore(node, 0, d, hard=hard, last_index=last[0], last_term=last[1])
    c.set_config(list(voters), [])
    return c, d


def persist(c: SlotCore, d: Disk):
    rd = c.take_ready()
    if rd.cut is not None:
        del d.entries[rd.cut:]
    d.entries.extend(rd.persist)
    return rd


def lead(c: SlotCore, d: Disk, term: int, now: float = 0.0):
    """Make ``c`` a ready leader at ``term`` with promises from every voter at its own position."""
    c.tick(now)
    assert c.become_leader(term)
    for v in c.voters:
        if v != c.node_id:
            c.on_prepare_reply(v, term, {"ok": True, "last_index": 0, "last_term": 0, "commit": 0})
    batch = c.take_unflushed()
    d.entries.extend(batch)
    c.persisted(batch[-1][0])
    for v in c.voters:
        if v != c.node_id:
            req = c.append_request(v, heartbeat=True)
            c.on_append_reply(v, req, {"ok": True, "match": req.prev_idx + len(req.entries)})
    assert c.ready
    c.applied_to(c.commit_index)
    return c.take_ready()


# ---------------------------------------------------------------- log rules
def test_merge_plan_skips_held_entries_and_cuts_at_the_first_conflict():
    d = Disk(ents((1, 1), (2, 1), (3, 1)))
    log = SlotLog(d, 3, 1)
    assert log.merge_plan(ents((2, 1), (3, 1)), 0) == (None, [])
    cut, new = log.merge_plan(ents((2, 1), (3, 2), (4, 2)), 1)
    assert cut == 2 and [e[:2] for e in new] == [(3, 2), (4, 2)]
    assert log.merge_plan(ents((4, 1)), 0) == (None, ents((4, 1)))


def test_merge_plan_reads_the_held_range_once_not_once_per_entry():
    # a restarted node holds nothing in memory: a recovery fetch of its whole log made one
    # store read per held entry (seconds for a busy slot, with the replica's lock held)
    class CountingDisk(Disk):
        reads = 0

        def read_entries(self, first, last):
            self.reads += 1
            return super().read_entries(first, last)

    d = CountingDisk(ents(*[(i, 1 if i <= 600 else 2) for i in range(1, 1001)]))
    log = SlotLog(d, 1000, 2)
    assert log.merge_plan(ents(*[(i, 1 if i <= 600 else 2) for i in range(1, 1001)]), 0) == (None, [])
    assert d.reads <= 2
    d.reads = 0
    cut, new = log.merge_plan(ents(*[(i, 1 if i <= 700 else 3) for i in range(1, 1101)]), 600)
    assert cut == 600 and new[0][:2] == (601, 1) and new[-1][:2] == (1100, 3)
    assert d.reads <= 2


def test_the_tail_holds_messages_the_cycle_collector_does_not_track():
    # an Entry (a NamedTuple) or a list is tracked for ever, so 2,000 recent entries per slot
    # made every full collection of a busy node take 60-80 ms
    import gc

    from mesh.storage.entries import KIND_MSG, KIND_NOOP, Entry

    log = SlotLog(Disk([]), 0, 0)
    row = ["g1", 2, 1, 99, "u1", "cmn", 1700000000, 0, 0, 0, "", b"payload"]
    log.append([Entry(1, 1, KIND_NOOP, None), Entry(2, 1, KIND_MSG, row), (3, 1, KIND_MSG, tuple(row)),
                [4, 1, KIND_MSG, list(row)]])
    gc.collect()
    gc.collect()  # a tuple is untracked once what it holds is
    assert [type(e) for e in log.tail.values()] == [tuple] * 4
    assert not any(gc.is_tracked(e) for e in log.tail.values())
    assert log.entries(1, 4) == [(1, 1, KIND_NOOP, None)] + [(i, 1, KIND_MSG, tuple(row)) for i in (2, 3, 4)]


def test_merge_plan_refuses_a_conflict_below_the_commit_index_and_a_gap():
    log = SlotLog(Disk(ents((1, 1), (2, 1))), 2, 1)
    with pytest.raises(LogConflict):
        log.merge_plan(ents((2, 2)), 2)
    with pytest.raises(LogConflict):
        log.merge_plan(ents((4, 1)), 0)


def test_entries_read_below_the_tail_from_the_reader_and_the_tail_after_an_unpersisted_cut():
    d = Disk(ents((1, 1), (2, 1), (3, 1)))
    log = SlotLog(d, 3, 1)
    log.truncate_after(1)
    log.append(ents((2, 2)))
    assert [e[:2] for e in log.entries(1, 5)] == [(1, 1), (2, 2)]  # the disk still holds 2@1, 3@1
    assert log.term_at(2) == 2 and log.term_at(3) == -1


# ---------------------------------------------------------------- follower rules
def test_append_refuses_an_older_term_and_a_mismatching_previous_entry():
    c, d = core(node=2, entries=ents((1, 1), (2, 1)), hard=HardState(term=3))
    assert c.on_append(wire.Append(0, 2, 1, 2, 1, [], 0)) == {"ok": False, "term": 3, "last_index": 2}
    r = c.on_append(wire.Append(0, 3, 1, 2, 2, [], 0))
    assert r["ok"] is False
    r = c.on_append(wire.Append(0, 3, 1, 5, 3, [], 0))
    assert r["ok"] is False and r["last_index"] == 2


def test_append_cuts_a_conflicting_uncommitted_suffix_and_applies_what_the_leader_committed():
    c, d = core(node=2, entries=ents((1, 1), (2, 1), (3, 1)), hard=HardState(term=1))
    r = c.on_append(wire.Append(0, 2, 1, 1, 1, [list(e) for e in ents((2, 2), (3, 2))], 2))
    assert r == {"ok": True, "term": 2, "match": 3, "last_index": 3}
    rd = persist(c, d)
    assert rd.cut == 1 and rd.truncated == 2
    assert [e[:2] for e in d.entries] == [(1, 1), (2, 2), (3, 2)]
    assert [e[:2] for e in rd.apply] == [(1, 1), (2, 2)]
    assert c.commit_index == 2


# ---------------------------------------------------------------- e: durable hard state
def test_e_a_promise_is_hard_state_to_persist_before_the_answer():
    c, _ = core(node=2)
    r = c.on_prepare(wire.Prepare(0, 5, 1))
    assert r["ok"]
    rd = c.take_ready()
    assert rd.hard == HardState(term=5, led=0), "the promise must be persisted before answering"
    assert c.on_prepare(wire.Prepare(0, 4, 3)) == {"ok": False, "term": 5}


def test_e_a_higher_term_in_an_append_is_hard_state_too():
    c, _ = core(node=2)
    c.on_append(wire.Append(0, 7, 1, 0, 0, [], 0))
    assert c.take_ready().hard == HardState(term=7, led=0)


def test_e_a_restarted_follower_still_refuses_the_stale_leader():
    # node 2 promised term 3, then restarted: the stale term-2 leader must not cut its log
    c, d = core(node=2, entries=ents((1, 1), (2, 3)), hard=HardState(term=3))
    r = c.on_append(wire.Append(0, 2, 1, 1, 1, [list(e) for e in ents((2, 2))], 0))
    assert r["ok"] is False and r["term"] == 3
    assert c.take_ready().cut is None


# ---------------------------------------------------------------- d: a term is led once
def test_d_a_node_never_leads_twice_at_the_same_term():
    c, d = core()
    lead(c, d, 1)
    c.step_down("session lost")
    assert c.role == FOLLOWER
    assert c.become_leader(1) is False, "leading term 1 again could reuse (index, term) pairs"
    assert c.refused_term == 1
    assert c.become_leader(2) is True


def test_d_the_led_term_is_hard_state_and_survives_a_restart():
    c, d = core()
    assert c.become_leader(4)
    assert c.take_ready().hard == HardState(term=4, led=4)
    c2, _ = core(entries=d.entries, hard=HardState(term=4, led=4))
    assert c2.become_leader(4) is False


def test_d_step_down_drops_entries_not_durable_here():
    c, d = core()
    lead(c, d, 1)
    c.propose([(1, "x")])
    c.step_down("session lost")
    assert c.last_index == d.entries[-1][0]


# ---------------------------------------------------------------- b: apply each entry once
def test_b_committed_entries_are_handed_to_the_applier_once_even_before_they_are_applied():
    c, d = core()
    lead(c, d, 1)
    c.propose([(1, "a"), (1, "b")])
    batch = c.take_unflushed()
    d.entries.extend(batch)
    c.persisted(batch[-1][0])
    req = c.append_request(2)
    c.on_append_reply(2, req, {"ok": True, "match": req.prev_idx + 1})
    first = [e[0] for e in c.take_ready().apply]
    # the applier has not applied them yet (a hook is slow); the commit index moves on
    c.on_append_reply(2, req._replace(prev_idx=req.prev_idx + 1), {"ok": True, "match": batch[-1][0]})
    second = [e[0] for e in c.take_ready().apply]
    assert first and second and not set(first) & set(second), (first, second)
    assert first + second == list(range(first[0], second[-1] + 1))


def test_b_not_serving_until_the_barrier_is_applied():
    c, d = core()
    c.tick(0)
    c.become_leader(1)
    for v in (2, 3):
        c.on_prepare_reply(v, 1, {"ok": True, "last_index": 0, "last_term": 0, "commit": 0})
    batch = c.take_unflushed()
    d.entries.extend(batch)
    c.persisted(batch[-1][0])
    req = c.append_request(2, heartbeat=True)
    c.on_append_reply(2, req, {"ok": True, "match": 1})
    assert c.ready and not c.is_serving()
    c.applied_to(1)
    assert c.is_serving()


# ---------------------------------------------------------------- commit, backoff, in sync
def test_commit_needs_a_majority_and_an_entry_of_the_current_term():
    c, d = core(entries=ents((1, 1), (2, 1)), hard=HardState(term=1, led=1))
    c.tick(0)
    assert c.become_leader(2)
    c.on_prepare_reply(2, 2, {"ok": True, "last_index": 2, "last_term": 1, "commit": 0})
    batch = c.take_unflushed()
    assert [e[:2] for e in batch] == [(3, 2)]
    d.entries.extend(batch)
    c.persisted(3)
    # node 2 has the old entries only: 2@1 on a majority does not commit by itself
    c.on_append_reply(2, wire.Append(0, 2, 1, 2, 1, [], 0), {"ok": True, "match": 2})
    assert c.commit_index == 0
    c.on_append_reply(2, wire.Append(0, 2, 1, 2, 1, [[3, 2, 0, None]], 0), {"ok": True, "match": 3})
    assert c.commit_index == 3 and c.ready


def test_next_index_backs_off_on_a_refusal_and_a_newer_term_steps_down():
    c, d = core()
    lead(c, d, 1)
    for i in range(3):
        c.propose([(1, f"x{i}")])
    c.next_index[2] = c.last_index + 1
    req = c.append_request(2, heartbeat=True)
    c.on_append_reply(2, req, {"ok": False, "term": 1, "last_index": 1})
    assert c.next_index[2] == 2
    c.on_append_reply(2, req, {"ok": False, "term": 9})
    assert c.role == FOLLOWER and c.term == 9
    assert c.take_ready().hard.term == 9


def test_in_sync_lists_members_near_the_commit_index():
    c, d = core()
    lead(c, d, 1)
    assert c.in_sync() == frozenset({1, 2, 3})
    c.match[2], c.match[3] = 4000, 10
    c.commit_index = 5000
    assert c.in_sync() == frozenset({1, 2})


# ---------------------------------------------------------------- recovery and a
def test_recovery_adopts_the_longest_log_of_a_majority():
    c, d = core(entries=ents((1, 1)))
    c.tick(0)
    c.become_leader(2)
    sent = c.take_ready().send
    assert sorted(p for p, m, _ in sent if m == wire.REPL_PREPARE) == [2, 3]
    c.on_prepare_reply(3, 2, {"ok": True, "last_index": 3, "last_term": 1, "commit": 1})
    (peer, method, f), = c.take_ready().send
    assert (peer, method, f.first, f.last) == (3, wire.REPL_FETCH, 1, 3)
    c.on_fetch_reply(3, 2, [list(e) for e in ents((1, 1), (2, 1), (3, 1))])
    rd = persist(c, d)
    assert [e[:2] for e in rd.persist] == [(2, 1), (3, 1)]
    assert [e[:2] for e in c.take_unflushed()] == [(4, 2)]


def test_a_recovery_that_loses_a_promise_starts_a_new_round():
    c, d = core()
    c.tick(0)
    c.become_leader(1)
    c.take_ready()
    c.tick(RECOVERY_TIMEOUT / 2)
    assert not c.take_ready().send
    c.tick(RECOVERY_TIMEOUT + 0.1)
    assert sorted(p for p, m, _ in c.take_ready().send if m == wire.REPL_PREPARE) == [2, 3], \
        "recovery must retry, not wait forever"


def test_a_a_failed_fetch_starts_a_new_round():
    c, d = core()
    c.tick(0)
    c.become_leader(1)
    c.on_prepare_reply(2, 1, {"ok": True, "last_index": 5, "last_term": 1, "commit": 0})
    c.take_ready()
    c.on_fetch_reply(2, 1, None)  # the mesh request failed
    c.tick(0.01)
    assert any(m == wire.REPL_PREPARE for _, m, _ in c.take_ready().send)


def test_a_a_leader_not_ready_or_without_a_majority_for_too_long_says_it_is_stuck():
    c, d = core()
    c.tick(0)
    c.become_leader(1)
    c.tick(STUCK_AFTER / 2)
    assert not c.stuck
    c.tick(STUCK_AFTER + 0.1)
    assert c.stuck
    c2, d2 = core()
    lead(c2, d2, 1, now=0.0)
    c2.tick(1.0)
    assert not c2.stuck
    c2.tick(STUCK_AFTER + 1.5)  # no answers from 2 or 3 since t=0
    assert c2.stuck and c2.take_ready().status


def test_proposals_need_a_serving_leader():
    c, d = core()
    with pytest.raises(NotLeader):
        c.propose([(1, "x")])
    lead(c, d, 1)
    assert c.role == LEADER and c.propose([(1, "x")]) == c.last_index


def test_leading_a_newer_term_first_drops_the_old_terms_entries_not_durable_here():
    c, d = core()
    lead(c, d, 1)
    c.propose([(1, "x")])  # sent, never durable here
    assert c.become_leader(2)
    assert c.last_index == d.entries[-1][0] and c.durable_index == c.last_index
    assert not c.take_unflushed()


def test_a_failed_write_reloads_the_durable_log_and_the_commit_index_from_before_the_step():
    c, d = core(node=2, entries=ents((1, 1), (2, 1), (3, 1)), hard=HardState(term=1))
    r = c.on_append(wire.Append(0, 2, 1, 1, 1, [list(e) for e in ents((2, 2), (3, 2))], 3))
    assert r["ok"] and c.commit_index == 3
    rd = c.take_ready()  # the shell's write of this ready fails: the disk still has 2@1, 3@1
    assert rd.cut == 1 and [e[0] for e in rd.apply] == [1, 2, 3]
    c.reload(3, 1, commit_before=0)
    assert c.log.term_at(2) == 1 and c.commit_index == 0
    # the leader's retry repairs the log; nothing is handed to the applier twice
    r = c.on_append(wire.Append(0, 2, 1, 1, 1, [list(e) for e in ents((2, 2), (3, 2))], 3))
    assert r["ok"]
    rd = persist(c, d)
    assert rd.cut == 1 and not rd.apply
    assert [e[:2] for e in d.entries] == [(1, 1), (2, 2), (3, 2)]


def test_a_failed_write_during_recovery_steps_the_leader_down():
    c, d = core(entries=ents((1, 1), (2, 1)))
    c.tick(0)
    c.become_leader(2)
    c.on_prepare_reply(2, 2, {"ok": True, "last_index": 2, "last_term": 3, "commit": 0})
    c.on_fetch_reply(2, 2, [list(e) for e in ents((1, 1), (2, 3))])
    assert c.phase == "barrier"
    c.take_ready()  # writing the adopted entries fails
    c.reload(2, 1, commit_before=0)
    assert c.role == FOLLOWER and c.append_request(2, heartbeat=True) is None
    assert c.become_leader(2) is False  # this term is burned: a new one comes from the controller


def test_a_follower_that_lost_acknowledged_entries_is_sent_them_again():
    """A replica restored from an older backup rejects appends past its log: the leader goes back to
    what it has instead of retrying at its old match position for ever."""
    c, d = core()
    lead(c, d, 1)
    last = c.log.last_index
    assert c.match[2] == last
    req = c.append_request(2, heartbeat=True)
    assert req.prev_idx == last
    c.on_append_reply(2, req, {"ok": False, "term": 1, "last_index": 0})  # node 2 came back with nothing
    again = c.append_request(2, heartbeat=False)
    assert again.prev_idx == 0 and [e[0] for e in again.entries][:1] == [1]
    assert c.commit_index == last  # the commit index never goes back
