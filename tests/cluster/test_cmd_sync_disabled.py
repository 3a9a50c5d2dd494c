"""``disableCMDMessageSync`` (WuKongIM §1.7) on real processes: a 2-node cluster (real etcd and Redis) where
node 1 has the key set and node 2 does not, so one test shows both what the key turns off and what it
leaves alone.

Through node 1, ``/message/sync`` answers ``[]`` and ``/message/syncack`` ``{"status": 200}`` without
work; the CMD message is still stored, its CMD row made and delivered live with SyncOnce (to a client on
node 1), and that client's master RECVACK still moves the read position, as node 2's ``/message/sync``
shows.
"""
from __future__ import annotations

import base64
import json

import pytest

from gateway import wkproto as wk
from gateway.client import WKClient
from tests.support.servers import Cluster, uniq, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(2)
    try:
        c.etcd.start()
        c.redis.start()
        c.add_node(1, wait=False, extra={"disableCMDMessageSync": True})
        c.add_node(2, wait=False)
        for node in c.nodes.values():
            node.wait_healthy(45)
        c.wait_slots_ready()
        yield c
    finally:
        c.close()


def test_disable_cmd_message_sync_turns_off_sync_and_syncack_only(cluster):
    off, on = cluster.nodes[1], cluster.nodes[2]
    a, b = uniq("a"), uniq("b")
    assert off.post("/user/token", {"uid": b, "token": "tk-" + b, "device_flag": 1, "device_level": 1})[0] == 200
    g = uniq("g")
    assert off.post("/channel", {"channel_id": g, "channel_type": 2, "subscribers": [a, b]})[0] == 200
    cb = WKClient(f"127.0.0.1:{off.ports['tcp']}", b, "tk-" + b, auto_ack=False)
    cb.connect()
    try:
        st, body = off.post("/message/send", {"header": {"sync_once": 1}, "channel_id": g, "channel_type": 2,
                                              "payload": base64.b64encode(json.dumps(
                                                  {"type": 99, "cmd": "groupUpdate"}).encode()).decode()})
        assert st == 200 and body["data"]["message_seq"] == 1, body
        m = cb.recv(5)  # delivered live, SyncOnce
        assert (m.message_id, m.channel_id, m.flags & wk.FLAG_SYNC_ONCE) == \
            (body["data"]["message_id"], g, wk.FLAG_SYNC_ONCE)

        def synced(node, uid: str) -> list:
            st, got = node.post("/message/sync", {"uid": uid, "limit": 10})
            assert st == 200, got
            return [(x["message_seq"], x["channel_id"]) for x in got]

        for uid in (a, b):
            st, got = off.post("/message/sync", {"uid": uid, "limit": 10})
            print(f"node 1 (disableCMDMessageSync) POST /message/sync uid={uid} ->", st, got)
            assert (st, got) == (200, [])
            # stored, and the rows made: node 2 (key not set) returns it; this also records b's window
            assert synced(on, uid) == [(1, g + "____cmd")]
        st, got = off.post("/message/syncack", {"uid": b, "last_message_seq": 1})
        print("node 1 (disableCMDMessageSync) POST /message/syncack ->", st, got)
        assert (st, got) == (200, {"status": 200})
        assert synced(on, b) == [(1, g + "____cmd")]  # node 1's syncack acknowledged nothing
        # the master device's RECVACK, to node 1, still moves b's position
        cb.send_packet(wk.Recvack(m.message_id, m.message_seq, m.flags & 0x07))
        wait_until(lambda: synced(on, b) == [], 5, what="b's CMD read position moved by its RECVACK")
        assert synced(on, a) == [(1, g + "____cmd")]
    finally:
        cb.close()
