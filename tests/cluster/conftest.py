"""Fixtures that start real etcd, Redis and node processes (torn down after each test)."""
from __future__ import annotations

import pytest

from tests.support.servers import Cluster


@pytest.fixture
def cluster3():
    c = Cluster(3)
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture
def make_cluster():
    made = []

    def make(n=3, **kw):
        c = Cluster(n, **kw)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.close()
