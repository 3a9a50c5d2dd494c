"""The leader's per-slot sequencer state (mesh/im/sequencer.py)."""
from mesh.im.sequencer import Sequencer


class Applied:
    def __init__(self, seqs: dict) -> None:
        self.seqs = seqs

    def last_seq(self, channel_id: str, channel_type: int) -> int:
        return self.seqs.get((channel_id, channel_type), 0)


def test_seqs_continue_after_the_applied_ones_and_count_the_ones_in_flight():
    applied = Applied({("g1", 2): 41})
    s = Sequencer(term=3)
    assert [s.next_seq(("g1", 2), applied) for _ in range(3)] == [42, 43, 44]
    applied.seqs[("g1", 2)] = 43  # two of them committed meanwhile: no reuse
    assert s.next_seq(("g1", 2), applied) == 45
    assert s.next_seq(("u1@u2", 1), applied) == 1


def test_a_new_leadership_starts_from_the_applied_state():
    applied = Applied({("g1", 2): 44})
    old = Sequencer(term=3)
    assert old.next_seq(("g1", 2), applied) == 45  # proposed, then the leadership ended uncommitted
    assert Sequencer(term=4).next_seq(("g1", 2), applied) == 45


def test_a_send_in_flight_is_found_until_it_resolves():
    s = Sequencer(term=1)
    key = ("g1", 2, "alice", "cmn-1")
    assert s.pending(key) is None
    s.add(key, ("result", 7, 45))
    assert s.pending(key) == ("result", 7, 45)
    s.done(key)
    s.done(key)  # a second resolution is harmless
    assert s.pending(key) is None
