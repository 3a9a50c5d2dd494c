"""Unit tests of the web manager's message-rate tracker (fake clock and counters, no I/O)."""
from __future__ import annotations

from api.node_stats import RateTracker


class Fake:
    def __init__(self) -> None:
        self.now = 100.0
        self.values = {"in_total": 0.0, "out_total": 0.0}

    def tracker(self, **kw) -> RateTracker:
        return RateTracker({"in": "in_total", "out": "out_total"}, read=self.values.__getitem__,
                           clock=lambda: self.now, **kw)


def test_no_rate_before_a_full_interval():
    f = Fake()
    t = f.tracker(interval=1.0)
    assert t.rates() == {"in": 0.0, "out": 0.0}
    t.sample()
    f.now += 0.01
    f.values["in_total"] = 50
    assert t.rates() == {"in": 0.0, "out": 0.0}  # 50 in 10 ms is no rate to show


def test_rate_is_the_slope_over_the_window_up_to_now():
    f = Fake()
    t = f.tracker(interval=1.0, window=10.0)
    for _ in range(30):  # 30 s at 4 in/s and 2 out/s, sampled every second
        t.sample()
        f.now += 1
        f.values["in_total"] += 4
        f.values["out_total"] += 2
    assert t.rates() == {"in": 4.0, "out": 2.0}
    assert t.totals() == {"in": 120.0, "out": 60.0}
    f.now += 20  # then silence for longer than the window
    for _ in range(11):
        t.sample()
        f.now += 1
    assert t.rates() == {"in": 0.0, "out": 0.0}


def test_counter_reset_never_gives_a_negative_rate():
    f = Fake()
    t = f.tracker(interval=1.0)
    f.values["in_total"] = 100
    t.sample()
    f.now += 2
    f.values["in_total"] = 10
    assert t.rates()["in"] == 0.0


def test_samples_are_bounded():
    f = Fake()
    t = f.tracker(keep=5)
    for _ in range(20):
        t.sample()
        f.now += 1
    assert len(t.samples) == 5
