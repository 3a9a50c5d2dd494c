"""CMD messages and system accounts on a 3-node cluster of real processes (real etcd and Redis).

CMD (``/message/send`` with ``header.sync_once=1``): stored in the channel's ``____cmd``
log, returned by ``/message/sync`` to each member until ``/message/syncack``, absent from
the group's history and from conversations, delivered live (the official JS SDK 1.0.4
surfaces it to its CMD listeners), read positions moved by a master device's RECVACK and
kept across the death of the uid's slot leader. System accounts: added on one node, in
force on every node within a second; removed, the non-subscriber reason again.
"""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from coordinator.slot_table import slot_of
from gateway import wkproto as wk
from gateway.client import WKClient
from tests.support.clients import js_sdk
from tests.support.servers import Cluster, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3)
    try:
        c.start()
        n1 = c.nodes[1]
        wait_until(lambda: all(s["ready"] for s in n1.get("/cluster/slots")[1]["slots"]), 30, what="slots ready")
        yield c
    finally:
        c.close()


def uniq(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def tok(node, uid, flag=1, level=1):
    assert node.post("/user/token", {"uid": uid, "token": "tk-" + uid, "device_flag": flag,
                                     "device_level": level}) == (200, {"status": 200})


def b64(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def group(node, members: list[str]) -> str:
    g = uniq("g")
    assert node.post("/channel", {"channel_id": g, "channel_type": 2, "subscribers": members})[0] == 200
    return g


def send_cmd(node, g: str, content: dict, from_uid: str = "") -> dict:
    st, body = node.post("/message/send", {"header": {"sync_once": 1}, "from_uid": from_uid, "channel_id": g,
                                           "channel_type": 2, "payload": b64(content)})
    assert st == 200, body
    return body["data"]


def cmd_sync(node, uid: str) -> list:
    st, body = node.post("/message/sync", {"uid": uid, "limit": 100})
    assert st == 200, body
    return body


def test_cmd_to_a_group_is_synced_by_each_member_and_kept_apart_from_chat(cluster):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    a, b = uniq("a"), uniq("b")
    g = group(n1, [a, b])
    st, chat = n1.post("/message/send", {"from_uid": a, "channel_id": g, "channel_type": 2,
                                         "payload": b64({"type": 1, "content": "hi"})})
    assert st == 200
    st, convs_before = n2.post("/conversation/sync", {"uid": b, "msg_count": 5})
    assert st == 200
    [conv] = [c for c in convs_before if c["channel_id"] == g]
    assert conv["unread"] == 1 and conv["last_msg_seq"] == 1

    data = send_cmd(n1, g, {"type": 99, "cmd": "groupUpdate", "param": {"g": g}})
    assert data["message_seq"] == 1  # the CMD log's own seqs
    print("POST /message/send sync_once=1 ->", data)
    for uid, node in ((a, n2), (b, n3)):
        got = cmd_sync(node, uid)
        print(f"POST /message/sync uid={uid} ->", got)
        assert [(m["message_id"], m["message_seq"], m["channel_id"], m["channel_type"], m["header"]["sync_once"])
                for m in got] == [(data["message_id"], 1, g + "____cmd", 2, 1)]
        assert json.loads(base64.b64decode(got[0]["payload"]))["cmd"] == "groupUpdate"

    st, hist = n3.post("/channel/messagesync", {"login_uid": b, "channel_id": g, "channel_type": 2, "limit": 50})
    assert st == 200 and [m["message_id"] for m in hist["messages"]] == [chat["data"]["message_id"]]
    st, convs_after = n2.post("/conversation/sync", {"uid": b, "msg_count": 5})
    assert st == 200
    assert not [c for c in convs_after if c["channel_id"].endswith("____cmd")]
    [conv2] = [c for c in convs_after if c["channel_id"] == g]
    assert (conv2["unread"], conv2["last_msg_seq"]) == (1, 1)

    # syncack moves b's position (not a's); last_message_seq 0 is refused as in WuKongIM
    assert n1.post("/message/syncack", {"uid": b, "last_message_seq": 0})[0] == 400
    st, body = n1.post("/message/syncack", {"uid": b, "last_message_seq": 1})
    print(f"POST /message/syncack uid={b} ->", st, body)
    assert (st, body) == (200, {"status": 200})
    assert cmd_sync(n2, b) == []
    assert len(cmd_sync(n3, a)) == 1
    # a second CMD: only it is new for b
    data2 = send_cmd(n2, g, {"type": 99, "cmd": "second"})
    assert [m["message_seq"] for m in cmd_sync(n3, b)] == [data2["message_seq"]] == [2]
    assert [m["message_seq"] for m in cmd_sync(n1, a)] == [1, 2]


def test_cmd_validation(cluster):
    n1 = cluster.nodes[1]
    assert n1.post("/message/sync", {"uid": " "})[0] == 400
    assert n1.post("/message/sync", {"uid": "x", "limit": -1})[0] == 400
    assert n1.post("/message/sync", {"uid": uniq("nobody")}) == (200, [])
    assert n1.post("/message/syncack", {"uid": ""})[0] == 400


def test_js_sdk_receives_the_cmd_live_and_its_recvack_moves_the_read_position(cluster):
    n1, n2 = cluster.nodes[1], cluster.nodes[2]
    u = uniq("js")
    tok(n1, u, flag=1, level=1)
    g = group(n2, [u, uniq("other")])
    js = js_sdk(f"ws://127.0.0.1:{n1.ports['ws']}", u, "tk-" + u)
    try:
        js.cmd(cmd="connect")
        st = js.wait(lambda e: e["event"] == "status" and e.get("reasonCode") not in (None, 0), 20, "js connect")
        assert st["reasonCode"] == 1, st
        data = send_cmd(n2, g, {"type": 99, "cmd": "friendRequest", "param": {"from": "x"}})
        ev = js.wait(lambda e: e["event"] in ("cmd", "message"), 20, "js receives the CMD")
        print("JS SDK 1.0.4 event:", ev)
        assert ev["event"] == "cmd"  # the SDK's CMD listener, not the chat listener
        assert ev["messageID"] == str(data["message_id"]) and ev["channelID"] == g
        assert ev["header"]["syncOnce"] is True and ev["payload"]["cmd"] == "friendRequest"
        # the SDK's RECVACK echoes SyncOnce from a master device: the position moves without syncack
        wait_until(lambda: cmd_sync(n2, u) == [], 5, what="CMD read position moved by RECVACK")
    finally:
        js.close()


def test_system_uid_added_on_node1_sends_through_node3_to_a_group_it_is_not_in(cluster):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    bot, member = uniq("bot"), uniq("m")
    tok(n1, bot)
    g = group(n2, [member])
    c = WKClient(f"127.0.0.1:{n3.ports['tcp']}", bot, "tk-" + bot)
    c.connect()
    try:
        payload = json.dumps({"type": 1, "content": "from the bot"}).encode()
        assert c.send(g, 2, payload).reason_code == wk.REASON_SUBSCRIBER_NOT_EXIST
        st, body = n1.post("/user/systemuids_add", {"uids": [bot]})
        print("POST /user/systemuids_add ->", st, body)
        assert (st, body) == (200, {"status": 200})
        t0 = time.monotonic()
        while True:
            ack = c.send(g, 2, payload)
            if ack.reason_code == wk.REASON_SUCCESS or time.monotonic() - t0 > 5:
                break
            time.sleep(0.02)
        took = time.monotonic() - t0
        print(f"system uid in force on node 3's path {took:.3f}s after the add returned")
        assert ack.reason_code == wk.REASON_SUCCESS and took < 1.0
        st, body = n3.get("/user/systemuids")
        print("GET /user/systemuids ->", st, body)
        assert st == 200 and bot in body and "____system" not in body

        assert n2.post("/user/systemuids_remove", {"uids": [bot]}) == (200, {"status": 200})
        t0 = time.monotonic()
        while True:
            ack = c.send(g, 2, payload)
            if ack.reason_code != wk.REASON_SUCCESS or time.monotonic() - t0 > 5:
                break
            time.sleep(0.02)
        assert ack.reason_code == wk.REASON_SUBSCRIBER_NOT_EXIST and time.monotonic() - t0 < 1.0
        assert bot not in (n1.get("/user/systemuids")[1] or [])
    finally:
        c.close()


def test_cmd_read_positions_survive_the_uid_slot_leader_being_killed(cluster):
    """Last in the module: kills a node."""
    n1 = cluster.nodes[1]
    a, b = uniq("a"), uniq("b")
    g = group(n1, [a, b])
    send_cmd(n1, g, {"type": 99, "cmd": "one"})
    assert len(cmd_sync(n1, b)) == 1
    assert n1.post("/message/syncack", {"uid": b, "last_message_seq": 1}) == (200, {"status": 200})
    table = n1.get("/cluster/slots")[1]
    leader = table["slots"][slot_of(b, table["slotCount"])]["leader"]
    print(f"uid {b}'s slot is led by node {leader}: kill -9")
    cluster.nodes[leader].kill9()
    other = next(n for i, n in cluster.nodes.items() if i != leader)

    def retried(fn):
        def once():
            try:
                return [fn()]
            except AssertionError:  # 503 while the dead node's slots get new leaders
                return None
        return wait_until(once, 30, what="a call through another node")[0]

    assert retried(lambda: cmd_sync(other, b)) == []
    data = retried(lambda: send_cmd(other, g, {"type": 99, "cmd": "two"}))
    assert [m["message_seq"] for m in retried(lambda: cmd_sync(other, b))] == [data["message_seq"]] == [2]
    assert [m["message_seq"] for m in retried(lambda: cmd_sync(other, a))] == [1, 2]
