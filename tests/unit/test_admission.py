"""Admission: the pure rules (token buckets, keyed limiters with cluster counts, offences, log
throttling) and the session's use of them (read pause with a backlog, SENDACK 22, DISCONNECT 22
after the grace period, the per-IP connection limit), with a real Gateway and test doubles."""
from __future__ import annotations

import base64
import json
import time

from gateway import wkproto as wk
from gateway.admission import KeyedLimiter, LogThrottle, Offence, TokenBucket
from gateway.ports import SendResult
from gateway.session import CLOSED
from tests.support.gateway_harness import FakeTransport, make_gateway
from tests.unit.test_session import Client


# ---------------------------------------------------------------------- pure rules
def test_token_bucket_burst_then_rate():
    b = TokenBucket(10, 5, now=0.0)
    assert [b.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert abs(b.wait_time(0.0) - 0.1) < 1e-9
    assert not b.take(0.05) and b.take(0.1)
    assert b.take(100.0) and b.tokens == 4  # refill is capped at the burst


def test_token_bucket_charge_goes_negative_at_most_one_burst():
    b = TokenBucket(10, 5, now=0.0)
    b.charge(0.0, 100)
    assert b.tokens == -5 and abs(b.wait_time(0.0) - 0.6) < 1e-9
    assert not b.take(0.5) and b.take(0.61)


def test_keyed_limiter_counts_and_charges_what_other_nodes_took():
    lim = KeyedLimiter(rate=10, burst=10)
    for _ in range(4):
        assert lim.take("u", 0.0)
    synced = lim.to_sync(0.0)
    assert synced == [("u", 4)] and lim.to_sync(0.0) == [("u", 0)] and lim.to_sync(3.0) == []
    lim.apply_totals(0.0, synced, [4])  # first sync: the baseline, nothing charged
    assert lim.entries["u"].bucket.tokens == 6
    lim.take("u", 0.0)
    synced = lim.to_sync(0.0)
    lim.apply_totals(0.0, synced, [4 + 1 + 5])  # 5 more were taken on other nodes
    assert lim.entries["u"].bucket.tokens == 0
    assert not lim.take("u", 0.0)
    lim.forget_synced()
    assert lim.entries["u"].total == -1


def test_keyed_limiter_disabled_and_prune():
    assert KeyedLimiter(0, 10).take("x", 0.0)
    lim = KeyedLimiter(10, 10)
    lim.take("a", 0.0)
    lim.to_sync(0.0)
    assert lim.prune(30.0) == 0  # used 30 s ago: kept
    assert lim.prune(61.0) == 1 and not lim.entries


def test_offence_needs_refusals_for_the_whole_grace_period():
    o = Offence(5.0)
    assert not o.refused(0.0) and not o.refused(4.0)
    assert o.refused(5.0)
    o = Offence(5.0)
    o.refused(0.0)
    assert not o.refused(5.5)  # a pause longer than the grace starts a new run
    assert not o.refused(9.0) and o.refused(10.5)


def test_log_throttle_one_line_per_key_per_minute_with_the_count():
    t = LogThrottle(60.0)
    assert t.hit("a", 0.0) == 1
    assert [t.hit("a", x) for x in (1.0, 2.0, 59.0)] == [None, None, None]
    assert t.hit("b", 2.0) == 1
    assert t.hit("a", 60.0) == 4  # the three quiet ones and this one


# ---------------------------------------------------------------------- the session
class HoldingSink:
    """Keeps every SEND unanswered until the test answers it."""

    def __init__(self) -> None:
        self.held: list = []

    def submit(self, req, done) -> None:
        self.held.append((req, done))

    def answer(self, n: int) -> None:
        for _ in range(n):
            _req, done = self.held.pop(0)
            done(SendResult(wk.REASON_SUCCESS, 1, 1))


def gateway(**cfg):
    gw, tokens, _sink, _pub = make_gateway(**cfg)
    tokens.tokens[("u1", 1)] = ("t1", 1)
    return gw


def sends(c: Client, n: int, channel="u2") -> bytes:
    frames = []
    for _ in range(n):
        c.seq += 1
        body = c.cipher.encrypt(b"x")
        key = c.cipher.send_msg_key(c.seq, f"c{c.seq}", channel, 1, body)
        frames.append(wk.encode(wk.Send(0, c.seq, f"c{c.seq}", "", channel, 1, 0, key, "", body, 0), c.version))
    return b"".join(frames)


def acks(c: Client) -> list[int]:
    return [p.reason_code for p in c.t.packets(c.version) if p.type == wk.SENDACK]


def test_session_stops_dispatching_at_max_pending_sends_and_resumes_at_half():
    gw = gateway(**{"conn.maxPendingSends": 10, "limits.connSendRate": 0, "limits.uidSendRate": 0})
    sink = HoldingSink()
    gw.sink = sink
    c = Client(gw)
    c.connect()
    woken = []
    c.s.on_resume = lambda: woken.append(1)
    c.s.feed(sends(c, 25) + wk.PING_BYTES)
    assert len(sink.held) == 10 and c.s.paused and len(c.s.backlog) == 16  # 15 SENDs and the PING wait
    assert c.s.read_delay() == 0.0
    sink.answer(4)
    assert c.s.paused and not woken  # 6 pending: not yet half
    sink.answer(1)
    assert not c.s.paused and woken == [1]
    c.s.resume()
    assert len(sink.held) == 10 and c.s.paused and len(c.s.backlog) == 11
    sink.answer(10)
    c.s.resume()
    assert len(sink.held) == 10 and c.s.paused and len(c.s.backlog) == 1  # the PING, in order
    assert not any(p.type == wk.PONG for p in c.t.packets(c.version))
    sink.answer(10)
    c.s.resume()
    assert not c.s.paused and c.s.backlog is None and not sink.held
    assert c.t.packets(c.version)[-1].type == wk.PONG and acks(c) == [1] * 25


def test_a_paused_session_is_neither_idle_nor_stalled():
    gw = gateway(**{"conn.maxPendingSends": 2, "conn.partialFrameTimeout": "1s", "conn.idleTimeout": "2s",
                    "limits.connSendRate": 0, "limits.uidSendRate": 0})
    sink = HoldingSink()
    gw.sink = sink
    c = Client(gw)
    c.connect()
    c.s.feed(sends(c, 3) + bytes([0x30, 0x40]))  # paused, with half a frame read
    assert c.s.paused
    gw.sweep(time.monotonic() + 5)
    assert c.s.state != CLOSED
    sink.answer(2)
    c.s.resume()
    assert not c.s.paused and not c.s.backlog
    gw.sweep(time.monotonic() + 10)  # reading again: now the half frame counts
    assert c.s.state == CLOSED


def test_over_the_connection_rate_sendack_22_then_disconnect_22_after_grace():
    gw = gateway(**{"limits.connSendRate": 1, "limits.connSendBurst": 5, "limits.graceSeconds": "0.2s"})
    c = Client(gw)
    c.connect()
    kicked = []
    gw.close_later = lambda s, delay, why: kicked.append((delay, why))
    c.s.feed(sends(c, 8))
    assert acks(c) == [1] * 5 + [22] * 3
    assert c.s.read_delay() == 0.0  # a few refusals in a read: read on
    c.s.feed(sends(c, 40))
    assert acks(c) == [1] * 5 + [22] * (3 + 32) and len(c.s.backlog) == 8  # 32 refused, the rest waits
    assert c.s.read_delay() >= 0.1  # many: the listener waits before going on
    assert not kicked
    for _ in range(6):  # still sending, still refused
        time.sleep(0.05)
        c.s.feed(sends(c, 1))
    disc = [p for p in c.t.packets(c.version) if p.type == wk.DISCONNECT]
    assert disc and disc[0].reason_code == wk.REASON_RATE_LIMIT and disc[0].reason == "rate limit exceeded"
    assert kicked and c.s.read_delay() == 1.0
    assert acks(c) == [1] * 5 + [22] * (3 + 40 + 6)


def test_uid_limit_spans_the_uids_connections():
    gw = gateway(**{"limits.connSendRate": 0, "limits.uidSendRate": 3, "limits.uidSendBurst": 3})
    c1, c2 = Client(gw, device_id="d1"), Client(gw, device_id="d1b")
    c1.connect()
    c2.device_flag = 1
    c2.connect()
    c1.s.feed(sends(c1, 2))
    c2.s.feed(sends(c2, 2))
    assert acks(c1) == [1, 1] and acks(c2) == [1, 22]


def test_json_rpc_send_gets_reason_22_and_pauses_too():
    gw = gateway(**{"limits.connSendRate": 2, "limits.connSendBurst": 2, "conn.maxPendingSends": 2})
    sink = HoldingSink()
    gw.sink = sink
    t = FakeTransport("ws")
    s = gw.open(t)
    s.feed(json.dumps({"method": "connect", "params": {"uid": "u1", "token": "t1", "deviceFlag": 1}, "id": 1})
           .encode())
    payload = base64.b64encode(b"hi").decode()
    reqs = b"".join(json.dumps({"method": "send", "id": i, "params": {"channelId": "u2", "channelType": 1,
                                                                        "payload": payload}}).encode()
                    for i in range(2, 6))
    s.feed(reqs)
    assert len(sink.held) == 2 and s.paused and len(s.backlog) == 2
    sink.answer(2)
    s.resume()
    answers = [json.loads(x) for x in t.text[1:]]
    assert [a["result"]["reasonCode"] for a in answers] == [1, 1, 22, 22]


def test_manager_uid_is_exempt():
    gw = gateway(**{"limits.connSendRate": 1, "limits.connSendBurst": 1, "limits.uidSendRate": 1,
                    "limits.uidSendBurst": 1, "managerToken": "mt"})
    c = Client(gw, uid="____manager", token="mt")
    c.connect()
    c.s.feed(sends(c, 5))
    assert acks(c) == [1] * 5


def test_per_ip_connection_limit():
    gw = gateway(**{"conn.maxConnectionsPerIp": 2})
    ts = [FakeTransport() for _ in range(3)]
    for t in ts:
        t.remote = "10.0.0.1:5000"
    s1, s2, s3 = (gw.open(t) for t in ts)
    assert s1 and s2 and s3 is None
    other = FakeTransport()
    other.remote = "10.0.0.2:1"
    assert gw.open(other) is not None
    s1.close("bye")
    assert s1.state == CLOSED and gw.open(ts[2]) is not None
    gw = gateway(**{"conn.maxConnectionsPerIp": 1, "conn.ipLimitExempt": "10.0.0.9,10.0.0.8"})
    lb = [FakeTransport() for _ in range(3)]
    for t in lb:
        t.remote = "10.0.0.9:1"
    assert all(gw.open(t) is not None for t in lb)


def test_over_the_node_bound_every_connection_waits_for_its_previous_send():
    gw = gateway(**{"limits.nodePendingSends": 3, "limits.connSendRate": 0, "limits.uidSendRate": 0})
    sink = HoldingSink()
    gw.sink = sink
    c = Client(gw)
    c.connect()
    c.s.feed(sends(c, 6))
    assert len(sink.held) == 4 and c.s.paused and gw.pending_sends == 4 and len(c.s.backlog) == 2
    sink.answer(2)
    assert not c.s.paused
    c.s.resume()
    assert len(sink.held) == 4 and c.s.paused and not c.s.backlog
    sink.answer(4)
    assert not c.s.paused and gw.pending_sends == 0 and acks(c) == [1] * 6


def test_uid_refusals_alone_also_lead_to_the_disconnect():
    gw = gateway(**{"limits.connSendRate": 0, "limits.uidSendRate": 1, "limits.uidSendBurst": 2,
                    "limits.graceSeconds": "0.1s"})
    c = Client(gw)
    c.connect()
    gw.close_later = lambda s, delay, why: None
    c.s.feed(sends(c, 3))
    for _ in range(3):
        time.sleep(0.04)
        c.s.feed(sends(c, 1))
    assert acks(c) == [1, 1, 22, 22, 22, 22] and c.s.rate_kicked


def test_recent_lag_averages_the_last_seconds_and_counts_an_overdue_probe(monkeypatch):
    from mesh.base import loop_lag

    samples = loop_lag._recent
    monkeypatch.setattr(loop_lag, "_recent", type(samples)(maxlen=samples.maxlen))
    assert loop_lag.recent_lag(100.0) == 0.0
    for i in range(10):
        loop_lag._recent.append((100.0 + i * 0.1, 3.0 if i % 2 else 1.0))
    assert abs(loop_lag.recent_lag(101.0) - 2.0) < 1e-9
    assert loop_lag.recent_lag(110.0) > 8  # the probe has not run for 9 s: the loop is stuck


def test_one_dispatch_handles_at_most_a_batch_and_the_rest_waits_its_turn():
    from gateway.session import DISPATCH_BATCH

    gw = gateway()
    c = Client(gw)
    c.connect()
    c.s.feed(wk.PING_BYTES * (2 * DISPATCH_BATCH + 10))
    pongs = lambda: sum(1 for p in c.t.packets(c.version) if p.type == wk.PONG)  # noqa: E731
    assert pongs() == DISPATCH_BATCH and len(c.s.backlog) == DISPATCH_BATCH + 10
    c.s.resume()
    c.s.resume()
    assert pongs() == 2 * DISPATCH_BATCH + 10 and c.s.backlog is None


def test_http_limits_per_from_uid_and_per_token_with_their_exemptions():
    import falcon

    from api.rate_limit import HttpSendLimits
    from mesh.base import config
    from mesh.im.channel_rules import SYSTEM_UID

    env = {"WK_CLUSTER_NODEID": "1", "WK_MANAGERTOKEN": "mt", "WK_LIMITS_HTTPFROMUIDRATE": "1",
           "WK_LIMITS_HTTPFROMUIDBURST": "2", "WK_LIMITS_HTTPTOKENRATE": "1", "WK_LIMITS_HTTPTOKENBURST": "3"}
    lim = HttpSendLimits(config.load(None, env=env))

    def refused(uid: str, token: str) -> str | None:
        try:
            lim.check(uid, token)
            return None
        except falcon.HTTPTooManyRequests as exc:
            assert exc.headers["Retry-After"] == "1"
            return exc.title

    assert [refused("a", "mt") for _ in range(3)] == [None, None, "rate limit exceeded for from_uid: too many "
                                                      "messages, slow down"]
    assert all(refused(SYSTEM_UID, "mt") is None for _ in range(10))  # system uid + manager token: exempt
    assert [refused(f"u{i}", "other") is None for i in range(4)] == [True, True, True, False]  # per token
    assert refused("b", "mt") is None  # another from_uid is served


def test_overloaded_node_says_so_in_health(monkeypatch):
    from types import SimpleNamespace

    from mesh.base import loop_lag
    from mesh.node import Node

    host = SimpleNamespace(cfg={"health.maxLoopLag": 2.0})
    monkeypatch.setattr(loop_lag, "recent_lag", lambda: 0.3)
    assert Node._overload_reasons(host) == []
    monkeypatch.setattr(loop_lag, "recent_lag", lambda: 2.5)
    assert Node._overload_reasons(host) == ["overloaded: the event loop runs 2.50s late on average "
                                            "(health.maxLoopLag 2s)"]
