"""Rolling restart under load: every node restarted in turn, nothing acknowledged lost."""
from __future__ import annotations

import json

import gevent
import pytest

from ops.rolling_restart import rolling_restart
from tests.support.workload import cluster_under_load

pytestmark = pytest.mark.cluster


def test_rolling_restart_under_load_loses_nothing():
    with cluster_under_load(3, {"cluster.leaseTTL": 2, "cluster.heartbeatInterval": "500ms"},
                            pairs=3, groups=2, group_size=3, rate=30) as (c, wl):
        gevent.sleep(2)
        lines = []
        done = rolling_restart(c.nodes[1].api, lambda nid: c.nodes[nid].stop(timeout=30),
                               lambda nid: c.nodes[nid].start(wait_healthy=False), node_timeout=90,
                               report=lines.append)
        print("\n".join(lines))
        assert [d["node"] for d in done] and len(done) == 3
        gevent.sleep(2)
        wl.stop()
        rep = wl.check()
        print("rolling restart: " + json.dumps({**rep, "nodes": done}))
        assert rep["acked"] > 0 and rep["lost"] == 0 and rep["duplicated"] == 0 and rep["gaps"] == 0, rep
        assert rep["divergent"] == 0 and rep["undelivered"] == 0, rep
        assert rep["errors"] == 0, rep  # clients saw reconnects only
        assert rep["reconnects"] > 0
