"""The per-uid send limit counts across nodes through a real Redis, and falls back to per-node
counts while Redis is down (two ``RateCounts`` stand for two nodes)."""
from __future__ import annotations

import shutil
import tempfile

import pytest

from coordinator.rate_counts import RateCounts
from coordinator.redis_client import RedisConn
from gateway.admission import KeyedLimiter
from tests.support.servers import RedisServer


@pytest.fixture
def redis_server():
    base = tempfile.mkdtemp(prefix="skein-rl-")
    r = RedisServer(base)
    r.start()
    yield r
    r.stop()
    shutil.rmtree(base, ignore_errors=True)


def node(url: str) -> tuple[RateCounts, KeyedLimiter]:
    conn = RedisConn(url, timeout=0.5)
    conn.check()
    rc = RateCounts(conn, "t", 0.25)
    lim = rc.add("uid", KeyedLimiter(rate=1, burst=10))
    return rc, lim


def takes(lim: KeyedLimiter, n: int) -> int:
    import time
    now = time.monotonic()
    return sum(lim.take("u", now) for _ in range(n))


def test_two_nodes_share_one_budget_and_fall_back_to_their_own(redis_server):
    (rc1, lim1), (rc2, lim2) = node(redis_server.url), node(redis_server.url)
    assert takes(lim1, 1) == 1 and takes(lim2, 1) == 1
    assert rc1.sync() == 1 and rc2.sync() == 1  # baselines
    assert takes(lim1, 4) == 4 and takes(lim2, 4) == 4
    rc1.sync()
    rc2.sync()
    rc1.sync()  # node 1 learns node 2's 4 (a key used in the last seconds is read even without new use)
    # each node took 5 of the uid's 10, and was charged the other's 4: about 1 token left on each
    assert takes(lim1, 5) <= 2 and takes(lim2, 5) <= 2
    # Redis down: no error, each node goes on with its own bucket
    redis_server.stop()
    rc1.conn.check()
    assert rc1.sync() == 0 and lim1.entries["u"].total == -1
    fresh = KeyedLimiter(rate=1, burst=10)
    assert takes(fresh, 12) == 10  # what a node allows on its own
