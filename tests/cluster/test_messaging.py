"""Messaging on a 3-node cluster of real processes (replicaCount 3, real etcd and Redis).

1:1 and group delivery across nodes, offline backlog through messagesync, conversation
unread counts, the permission matrix, dedupe of retries, NoPersist, RECV retries,
presence, webhooks (with a receiver that fails first), the HTTP API's validation, and
the third-party SDKs talking to each other.
"""
from __future__ import annotations

import base64
import json
import threading
import uuid

import pytest
from gevent.pywsgi import WSGIServer

from gateway import wkproto as wk
from gateway.client import ClientError, WKClient
from tests.support.clients import easy_sdk, js_sdk
from tests.support.ports import free_port
from tests.support.servers import Cluster, http, wait_until

pytestmark = pytest.mark.cluster


class WebhookReceiver:
    """Records every webhook POST; answers 500 to the first ``fail_first`` of each event."""

    def __init__(self, fail_first: int = 3) -> None:
        self.port = free_port()
        self.events: list[tuple[str, object]] = []
        self.failed: dict[str, int] = {}
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.server = WSGIServer(("127.0.0.1", self.port), self.app, log=None)
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    def app(self, environ, start_response):
        from urllib.parse import parse_qs

        event = parse_qs(environ.get("QUERY_STRING", "")).get("event", [""])[0]
        body = environ["wsgi.input"].read()
        with self.lock:
            n = self.failed.get(event, 0)
            if n < self.fail_first:
                self.failed[event] = n + 1
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"try again"]
            self.events.append((event, json.loads(body)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def of(self, event: str) -> list:
        with self.lock:
            return [b for e, b in self.events if e == event]


@pytest.fixture(scope="module")
def hook():
    h = WebhookReceiver()
    yield h
    h.server.stop()


@pytest.fixture(scope="module")
def cluster(hook):
    c = Cluster(3, extra={"webhook.httpAddr": hook.url, "webhook.msgNotifyEventPushInterval": "200ms",
                          "messageRetry.interval": "2s", "messageRetry.scanInterval": "500ms",
                          "messageRetry.maxCount": 2})
    try:
        c.start()
        n1 = c.nodes[1]
        wait_until(lambda: all(s["ready"] for s in n1.get("/cluster/slots")[1]["slots"]), 30, what="slots ready")
        yield c
    finally:
        c.close()


def tok(node, uid, flag=1, level=1):
    assert node.post("/user/token", {"uid": uid, "token": "tk-" + uid, "device_flag": flag,
                                     "device_level": level}) == (200, {"status": 200})


def client(node, uid, **kw) -> WKClient:
    c = WKClient(f"127.0.0.1:{node.ports['tcp']}", uid, "tk-" + uid, **kw)
    c.connect()
    return c


def text(s: str) -> bytes:
    return json.dumps({"type": 1, "content": s}).encode()


def uniq(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def test_one_to_one_across_nodes_both_ways(cluster):
    n1, n2 = cluster.nodes[1], cluster.nodes[2]
    a, b = uniq("a"), uniq("b")
    tok(n1, a)
    tok(n1, b)
    ca, cb = client(n1, a), client(n2, b)
    for i in range(5):
        ack = ca.send(b, 1, text(f"a{i}"))
        assert ack.reason_code == 1 and ack.message_seq == 2 * i + 1
        m = cb.recv(5)
        assert (m.from_uid, m.channel_id, m.channel_type, m.payload) == (a, a, 1, text(f"a{i}"))
        assert m.message_id == ack.message_id and m.message_seq == ack.message_seq
        ack = cb.send(a, 1, text(f"b{i}"))
        assert ack.reason_code == 1 and ack.message_seq == 2 * i + 2
        m = ca.recv(5)
        assert (m.from_uid, m.channel_id, m.payload) == (b, b, text(f"b{i}"))


def test_group_of_five_over_three_nodes_in_order_backlog_and_unread(cluster):
    nodes = [cluster.nodes[i] for i in (1, 2, 3)]
    members = [uniq("m") for _ in range(5)]
    g = uniq("grp")
    for u in members:
        tok(nodes[0], u)
    assert nodes[1].post("/channel", {"channel_id": g, "channel_type": 2, "subscribers": members}) == \
        (200, {"status": 200})
    online = members[:4]
    offline = members[4]
    clients = {u: client(nodes[i % 3], u) for i, u in enumerate(online)}
    n = 12
    for i in range(n):
        sender = online[i % 4]
        ack = clients[sender].send(g, 2, text(f"g{i}"), client_msg_no=f"{g}-{i}")
        assert ack.reason_code == 1 and ack.message_seq == i + 1
    for u, c in clients.items():
        got = []
        while len(got) < n - sum(1 for i in range(n) if online[i % 4] == u):
            got.append(c.recv(5))
        seqs = [m.message_seq for m in got]
        assert seqs == sorted(seqs) and all(m.channel_id == g for m in got), (u, seqs)
        assert {m.message_seq for m in got} == {i + 1 for i in range(n) if online[i % 4] != u}
    # the offline member gets the whole backlog by sync, seqs 1..n with no gap
    code, body = nodes[2].post("/channel/messagesync", {"login_uid": offline, "channel_id": g, "channel_type": 2,
                                                        "start_message_seq": 0, "end_message_seq": 0, "limit": 100})
    assert code == 200 and [m["message_seq"] for m in body["messages"]] == list(range(1, n + 1))
    assert body["more"] == 0
    assert [base64.b64decode(m["payload"]) for m in body["messages"]] == [text(f"g{i}") for i in range(n)]
    # pull modes: up from 5 (5..9), down from 10 (6..10)
    up = nodes[0].post("/channel/messagesync", {"login_uid": offline, "channel_id": g, "channel_type": 2,
                                               "start_message_seq": 5, "end_message_seq": 0, "limit": 5,
                                               "pull_mode": 1})[1]
    assert [m["message_seq"] for m in up["messages"]] == [5, 6, 7, 8, 9] and up["more"] == 1
    down = nodes[0].post("/channel/messagesync", {"login_uid": offline, "channel_id": g, "channel_type": 2,
                                                 "start_message_seq": 10, "end_message_seq": 0, "limit": 5,
                                                 "pull_mode": 0})[1]
    assert [m["message_seq"] for m in down["messages"]] == [6, 7, 8, 9, 10]
    # conversations: the offline member has n unread, a sender fewer, clearUnread resets
    conv = nodes[0].post("/conversation/sync", {"uid": offline, "msg_count": 2})[1]
    mine = [c for c in conv if c["channel_id"] == g]
    assert mine and mine[0]["unread"] == n and mine[0]["last_msg_seq"] == n and len(mine[0]["recents"]) == 2
    assert mine[0]["recents"][0]["message_seq"] == n
    sender0 = nodes[1].post("/conversation/sync", {"uid": online[0], "msg_count": 1})[1]
    c0 = [c for c in sender0 if c["channel_id"] == g][0]
    assert c0["unread"] == n - 9  # read up to its own last message (seq 9)
    assert nodes[2].post("/conversations/clearUnread", {"uid": offline, "channel_id": g, "channel_type": 2,
                                                        "message_seq": 0}) == (200, {"status": 200})
    after = nodes[1].post("/conversation/sync", {"uid": offline, "msg_count": 1})[1]
    assert [c["unread"] for c in after if c["channel_id"] == g] == [0]
    assert nodes[0].post("/conversations/setUnread", {"uid": offline, "channel_id": g, "channel_type": 2,
                                                      "unread": 3})[0] == 200
    # setUnread never moves the read position back (WuKongIM v2.2.5)
    assert [c["unread"] for c in nodes[0].post("/conversation/sync", {"uid": offline, "msg_count": 1})[1]
            if c["channel_id"] == g] == [0]
    assert nodes[0].get(f"/channel/max_message_seq?channel_id={g}&channel_type=2") == (200, {"message_seq": n})
    for c in clients.values():
        c.close()


def test_permission_matrix_and_dedupe(cluster):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    owner, friend, stranger, enemy = uniq("o"), uniq("f"), uniq("s"), uniq("e")
    for u in (owner, friend, stranger, enemy):
        tok(n1, u)
    g = uniq("pg")
    n2.post("/channel", {"channel_id": g, "channel_type": 2, "subscribers": [owner, friend, enemy]})
    cf, cs, ce, co = client(n1, friend), client(n2, stranger), client(n3, enemy), client(n1, owner)
    assert cs.send(g, 2, text("x")).reason_code == wk.REASON_SUBSCRIBER_NOT_EXIST  # 3
    assert cs.send(uniq("nogroup"), 2, text("x")).reason_code == wk.REASON_SUBSCRIBER_NOT_EXIST
    assert n3.post("/channel/blacklist_add", {"channel_id": g, "channel_type": 2, "uids": [enemy]})[0] == 200
    assert ce.send(g, 2, text("x")).reason_code == wk.REASON_IN_BLACKLIST  # 4
    assert n1.post("/channel/whitelist_add", {"channel_id": g, "channel_type": 2, "uids": [owner]})[0] == 200
    assert n1.get(f"/channel/whitelist?channel_id={g}&channel_type=2")[1][0]["uid"] == owner
    assert cf.send(g, 2, text("x")).reason_code == wk.REASON_NOT_IN_WHITELIST  # 13
    assert co.send(g, 2, text("x")).reason_code == 1
    assert n1.post("/channel/whitelist_remove", {"channel_id": g, "channel_type": 2, "uids": [owner]})[0] == 200
    assert cf.send(g, 2, text("x")).reason_code == 1
    assert n2.post("/channel/info", {"channel_id": g, "channel_type": 2, "ban": 1})[0] == 200
    assert cf.send(g, 2, text("x")).reason_code == wk.REASON_BAN  # 19, in force at once on every node
    assert n2.post("/channel/info", {"channel_id": g, "channel_type": 2, "ban": 0})[0] == 200
    assert n3.post("/channel/delete", {"channel_id": g, "channel_type": 2})[0] == 200
    assert cf.send(g, 2, text("x")).reason_code == wk.REASON_DISBAND  # 24
    # person chats: the receiver's deny list, and the sender's global send_ban
    assert n1.post("/channel/blacklist_add", {"channel_id": owner, "channel_type": 1, "uids": [enemy]})[0] == 200
    assert ce.send(owner, 1, text("hi")).reason_code == wk.REASON_IN_BLACKLIST
    assert cf.send(owner, 1, text("hi")).reason_code == 1
    assert n2.post("/channel", {"channel_id": friend, "channel_type": 1, "send_ban": 1})[0] == 200
    assert cf.send(owner, 1, text("hi")).reason_code == wk.REASON_SEND_BAN  # 25
    n2.post("/channel", {"channel_id": friend, "channel_type": 1, "send_ban": 0})
    assert cf.send(owner, 1, text("hi")).reason_code == 1
    # a retry with the same client_msg_no returns the original id and seq and stores nothing
    first = cf.send(owner, 1, text("once"), client_msg_no="dup-1")
    seq_before = n3.get(f"/channel/max_message_seq?channel_id={owner}&channel_type=1&login_uid={friend}")[1]
    again = cf.send(owner, 1, text("once"), client_msg_no="dup-1")
    assert (again.message_id, again.message_seq) == (first.message_id, first.message_seq)
    assert n3.get(f"/channel/max_message_seq?channel_id={owner}&channel_type=1&login_uid={friend}")[1] == seq_before
    # a banned user cannot log in (CONNACK 19), and /user/token says so
    assert n1.post("/channel/info", {"channel_id": stranger, "channel_type": 1, "ban": 1})[0] == 200
    assert n1.post("/user/token", {"uid": stranger, "token": "x", "device_flag": 1}) == (200, {"status": 19})
    from gateway.client import ConnectRefused
    with pytest.raises(ConnectRefused) as e:
        WKClient(f"127.0.0.1:{n2.ports['tcp']}", stranger, "tk-" + stranger).connect()
    assert e.value.reason == wk.REASON_BAN


def test_no_persist_and_recv_retry(cluster):
    n1, n2 = cluster.nodes[1], cluster.nodes[2]
    a, b = uniq("np"), uniq("nq")
    tok(n1, a)
    tok(n1, b)
    ca, cb = client(n1, a), client(n2, b, auto_ack=False)
    ack = ca.send(b, 1, text("volatile"), flags=wk.FLAG_NO_PERSIST)
    assert ack.reason_code == 1 and ack.message_seq == 0
    m = cb.recv(5)
    assert m.message_seq == 0 and m.flags & wk.FLAG_NO_PERSIST
    assert n1.post("/channel/messagesync", {"login_uid": a, "channel_id": b, "channel_type": 1,
                                            "limit": 10})[1]["messages"] == []
    ack = ca.send(b, 1, text("keep"))
    first = cb.recv(5)
    assert first.message_id == ack.message_id
    again = cb.recv(6)  # not acknowledged: resent after messageRetry.interval (2 s here)
    assert again.message_id == ack.message_id and again.message_seq == ack.message_seq
    cb.send_packet(wk.Recvack(again.message_id, again.message_seq))
    with pytest.raises(ClientError):
        cb.recv(4)  # acknowledged: no more resends


def test_presence_on_any_node_and_route(cluster):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    u = uniq("pres")
    tok(n1, u)
    c = client(n3, u)
    wait_until(lambda: n1.post("/user/onlinestatus", [u, "nobody"])[1] == [{"uid": u, "device_flag": 1, "online": 1}],
               5, what="presence visible from another node")
    c.close()
    wait_until(lambda: n2.post("/user/onlinestatus", [u])[1] == [], 5, what="presence gone after close")
    code, route = n2.get(f"/route?uid={u}")
    assert code == 200 and set(route) == {"tcp_addr", "ws_addr", "wss_addr"}
    code, batch = n2.post("/route/batch", [u, "x"])
    assert code == 200 and batch[0]["uids"] == [u, "x"]
    assert n1.get("/varz")[1]["server_id"] == "1"
    assert "connections" in n3.get("/connz")[1]


def test_connz_of_another_node_and_device_quit_reach_that_node(cluster):
    """The gw.connz request and the gw.kick broadcast between nodes (wire.Connz, wire.Kick)."""
    n1, n3 = cluster.nodes[1], cluster.nodes[3]
    u = uniq("kick")
    tok(n1, u)
    c = client(n3, u)
    try:
        code, got = n1.get(f"/connz?node_id=3&uid={u}&limit=5")
        assert code == 200 and [x["uid"] for x in got["connections"]] == [u] and got["total"] == 1
        assert n1.post("/user/device_quit", {"uid": u, "device_flag": 1}) == (200, {"status": 200})
        wait_until(lambda: c.disconnects, 5, what="DISCONNECT on node 3 after device_quit on node 1")
        assert c.disconnects[0].reason_code == wk.REASON_CONNECT_KICK
        assert c.closed.wait(10), "the kicked connection was not closed"
    finally:
        c.close()


def test_webhooks_delivered_after_failures(cluster, hook):
    n1, n2 = cluster.nodes[1], cluster.nodes[2]
    a, b = uniq("wa"), uniq("wb")
    tok(n1, a)
    tok(n1, b)
    ca = client(n2, a)
    ack = ca.send(b, 1, text("hook me"))  # b is offline
    mid = ack.message_id

    def notify():
        return [m for batch in hook.of("msg.notify") for m in batch if m["message_id"] == mid]
    wait_until(notify, 30, what="msg.notify after the receiver's first 500s")
    m = notify()[0]
    assert m["message_idstr"] == str(mid) and m["from_uid"] == a and m["channel_id"] == b
    assert base64.b64decode(m["payload"]) == text("hook me") and m["message_seq"] == ack.message_seq
    assert m["header"]["red_dot"] == 1

    def offline():
        return [o for o in hook.of("msg.offline") if o["message_id"] == mid]
    wait_until(offline, 30, what="msg.offline for the offline recipient")
    o = offline()[0]
    assert o["to_uids"] == [b] and o["channel_id"] == b and o["from_uid"] == a

    def status():
        return [s for batch in hook.of("user.onlinestatus") for s in batch if s.startswith(a + "-")]
    wait_until(status, 30, what="user.onlinestatus")
    uid, flag, online, _conn, flag_count, total = status()[0].split("-")
    assert (uid, flag, online) == (a, "1", "1") and int(flag_count) >= 1 and int(total) >= 1
    assert all(hook.failed.get(e) == hook.fail_first for e in ("msg.notify", "msg.offline", "user.onlinestatus"))


def test_metadata_visible_on_every_node_at_once(cluster):
    g = uniq("vis")
    u = uniq("v")
    for n in cluster.nodes.values():
        tok(n, u + str(n.node_id))
    cl = {i: client(cluster.nodes[i], u + str(i)) for i in (1, 2, 3)}
    for i in (1, 2, 3):
        j = i % 3 + 1
        assert cluster.nodes[i].post("/channel/subscriber_add", {"channel_id": g, "channel_type": 2,
                                                                 "subscribers": [u + str(j)]})[0] == 200
        assert cl[j].send(g, 2, text("now")).reason_code == 1  # right after the call, from another node
        assert cluster.nodes[j].post("/channel/subscriber_remove", {"channel_id": g, "channel_type": 2,
                                                                    "subscribers": [u + str(j)]})[0] == 200
        assert cl[j].send(g, 2, text("gone")).reason_code == wk.REASON_SUBSCRIBER_NOT_EXIST


@pytest.mark.parametrize("path,body", [
    ("/user/token", b"{nope"), ("/user/token", {"uid": 5, "token": "x"}), ("/channel", {"channel_id": "x"}),
    ("/channel", {"channel_id": "a@b", "channel_type": 2}), ("/channel", {"channel_id": "x", "channel_type": 99}),
    ("/channel", {"channel_id": "u1", "channel_type": 1, "subscribers": ["a"]}),
    ("/message/send", {"channel_id": "x", "channel_type": 2, "payload": "!!"}),
    ("/message/send", {"channel_id": "never-created", "channel_type": 2, "payload": "aGk="}),
    ("/message/send", {"channel_id": "x", "channel_type": 2}),
    ("/channel/messagesync", {"login_uid": "u", "channel_id": "never-created", "channel_type": 2}),
    ("/channel/messagesync", {"channel_id": "x", "channel_type": 2}),
    ("/conversation/sync", {"uid": "u", "exclude_channel_types": "x"}),
    ("/channel/subscriber_add", {"channel_id": "x", "subscribers": []}),
    ("/channel/delete", {"channel_id": "never-created", "channel_type": 2}),
    ("/user/onlinestatus", {"a": 1}),
])
def test_bad_requests_get_400_with_a_message(cluster, path, body):
    code, resp = cluster.nodes[2].post(path, body)
    assert code == 400, (path, body, code, resp)
    assert resp["status"] == 400 and resp["msg"]


def test_manager_token_guards_the_api():
    c = Cluster(1, extra={"managerToken": "s3cret-token"})
    try:
        c.start()
        n = c.nodes[1]
        assert n.get("/health")[0] == 200  # health stays open for load balancers
        code, body = n.post("/user/token", {"uid": "x", "token": "t"})
        assert code == 401 and body["status"] == 401
        assert n.post("/user/token", {"uid": "x", "token": "t"}, headers={"token": "wrong"})[0] == 401
        assert n.post("/user/token", {"uid": "x", "token": "t"}, headers={"token": "s3cret-token"})[0] == 200
        assert "s3cret-token" not in n.proc.output()
    finally:
        c.close()


def test_sdks_exchange_messages(cluster):
    """wukongimjssdk 1.0.4 (Node) on node 1 and wukong-easy-sdk (JSON-RPC) on node 3."""
    n1, n3 = cluster.nodes[1], cluster.nodes[3]
    js_uid, py_uid = uniq("js"), uniq("py")
    tok(n1, js_uid, flag=1)
    tok(n1, py_uid, flag=2)
    js = js_sdk(f"ws://127.0.0.1:{n1.ports['ws']}", js_uid, "tk-" + js_uid)
    py = easy_sdk(f"ws://127.0.0.1:{n3.ports['ws']}", py_uid, "tk-" + py_uid)
    try:
        js.cmd(cmd="connect")
        st = js.wait(lambda e: e["event"] == "status" and e.get("reasonCode") not in (None, 0), 20, "js connect")
        assert st["reasonCode"] == 1, st
        py.cmd(cmd="connect")
        assert py.wait(lambda e: e["event"] in ("connected", "connect_error"))["event"] == "connected"
        js.cmd(cmd="send", channelID=py_uid, channelType=1, text="hello from js")
        ack = js.wait(lambda e: e["event"] == "sendack", 20, "js sendack")
        assert ack["reasonCode"] == 1
        got = py.wait(lambda e: e["event"] == "message", 20, "easy sdk receives")["message"]
        assert got["fromUid"] == js_uid and got["channelId"] == js_uid and got["payload"]["content"] == "hello from js"
        py.cmd(cmd="send", channelId=js_uid, channelType=1, payload={"type": 1, "content": "hello from python"})
        assert py.wait(lambda e: e["event"] in ("sendack", "send_error"))["result"]["reasonCode"] == 1
        m = js.wait(lambda e: e["event"] == "message", 20, "js receives")
        assert m["fromUID"] == py_uid and m["text"] == "hello from python" and m["channelID"] == py_uid
    finally:
        js.close()
        py.close()


def test_schemathesis_finds_no_500(cluster):
    import subprocess
    import sys

    n = cluster.nodes[2]
    r = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", f"{n.api}/openapi.json", "--checks",
                        "not_a_server_error", "--max-examples", "25", "--workers", "2", "--no-color",
                        "--request-timeout", "15"], capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    print(out[-1500:])
    assert r.returncode == 0, out[-5000:]
    import re

    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 500, out[-3000:]
    internal = [line for line in n.proc.output().splitlines() if "request" in line and "failed" in line
                and "api.errors" in line]
    assert not internal, internal[:5]


def test_js_sdk_refused_with_reason_2_on_wrong_token(cluster):
    n1 = cluster.nodes[1]
    u = uniq("jsbad")
    tok(n1, u)
    js = js_sdk(f"ws://127.0.0.1:{n1.ports['ws']}", u, "not-the-token")
    try:
        js.cmd(cmd="connect")
        st = js.wait(lambda e: e["event"] == "status" and e.get("reasonCode") not in (None, 0), 20, "js refused")
        assert st["reasonCode"] == wk.REASON_AUTH_FAIL, st
    finally:
        js.close()
    assert http("GET", n1.api + "/health")[0] == 200
