"""CMD messages and system accounts on a 3-node cluster of real processes (real etcd and Redis).

CMD (``/message/send`` with ``header.sync_once=1``): stored in the channel's ``____cmd``
log, returned by ``/message/sync`` to each member until ``/message/syncack``, absent from
the group's history and from conversations, delivered live (the official JS SDK 1.0.4
surfaces it to its CMD listeners), read positions moved by a master device's RECVACK and
kept across the death of the uid's slot leader; a master device's RECVACK of a client's SyncOnce
message moves the chat read position (WuKongIM's quirk). System accounts: added on one node, in
force on every node within a second; removed, the non-subscriber reason again. Message events:
live to v5 and JSON-RPC clients, eventsync, and ``event_meta`` on every read of WuKongIM §3.8.
"""
from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs

import pytest
from gevent.pywsgi import WSGIServer

from coordinator.slot_table import slot_of
from gateway import wkproto as wk
from gateway.client import ClientError, WKClient
from mesh.im.channel_rules import subscribers_cmd_channel
from tests.support.clients import easy_sdk, js_sdk
from tests.support.ports import free_port
from tests.support.servers import ready_cluster, uniq, wait_until

pytestmark = pytest.mark.cluster


class Receiver:
    """Records webhook POSTs (event name, parsed body)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[tuple[str, object]] = []
        self.server = WSGIServer(("127.0.0.1", self.port), self.app, log=None)
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def app(self, environ, start_response):
        event = parse_qs(environ.get("QUERY_STRING", "")).get("event", [""])[0]
        self.events.append((event, json.loads(environ["wsgi.input"].read())))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def notified(self) -> list[dict]:
        return [m for e, body in list(self.events) if e == "msg.notify" for m in body]


@pytest.fixture(scope="module")
def hooks():
    main, agent = Receiver(), Receiver()
    yield main, agent
    main.server.stop()
    agent.server.stop()


@pytest.fixture(scope="module")
def cluster(hooks):
    with ready_cluster(extra={"webhook.httpAddr": hooks[0].url, "agent.webhook.httpAddr": hooks[1].url,
                          "webhook.msgNotifyEventPushInterval": "200ms"}) as c:
        yield c


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
        # the person lists do not hold a system account back, either way (§2.4)
        other = uniq("x")
        tok(n1, other)
        assert n1.post("/channel/blacklist_add", {"channel_id": other, "channel_type": 1, "uids": [bot]})[0] == 200
        assert n2.post("/channel/blacklist_add", {"channel_id": bot, "channel_type": 1, "uids": [other]})[0] == 200
        assert c.send(other, 1, payload).reason_code == wk.REASON_SUCCESS
        co = WKClient(f"127.0.0.1:{n2.ports['tcp']}", other, "tk-" + other)
        co.connect()
        try:
            assert co.send(bot, 1, payload).reason_code == wk.REASON_SUCCESS
        finally:
            co.close()

        assert n2.post("/user/systemuids_remove", {"uids": [bot]}) == (200, {"status": 200})
        t0 = time.monotonic()
        while True:
            ack = c.send(g, 2, payload)
            if ack.reason_code != wk.REASON_SUCCESS or time.monotonic() - t0 > 5:
                break
            time.sleep(0.02)
        assert ack.reason_code == wk.REASON_SUBSCRIBER_NOT_EXIST and time.monotonic() - t0 < 1.0
        assert c.send(other, 1, payload).reason_code == wk.REASON_IN_BLACKLIST
        assert bot not in (n1.get("/user/systemuids")[1] or [])
    finally:
        c.close()


def text(s: str) -> bytes:
    return json.dumps({"type": 1, "content": s}).encode()


def client(node, uid, token=None) -> WKClient:
    c = WKClient(f"127.0.0.1:{node.ports['tcp']}", uid, "tk-" + uid if token is None else token)
    c.connect()
    return c


def history(node, login_uid: str, cid: str, ctype: int) -> list[str]:
    st, body = node.post("/channel/messagesync", {"login_uid": login_uid, "channel_id": cid, "channel_type": ctype,
                                                  "limit": 50})
    assert st == 200, body
    return [json.loads(base64.b64decode(m["payload"]))["content"] for m in body["messages"]]


def test_two_users_chatting_with_one_agent_have_separate_channels_and_histories(cluster, hooks):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    u1, u2, ag = uniq("u"), uniq("u"), uniq("agent")
    for u in (u1, u2, ag):
        tok(n1, u)
    c1, c2, cag = client(n1, u1), client(n2, u2), client(n3, ag)
    try:
        a1 = c1.send(ag, 11, text("from u1"))
        a2 = c2.send(ag, 11, text("from u2"))
        assert (a1.reason_code, a1.message_seq, a2.reason_code, a2.message_seq) == (1, 1, 1, 1)  # two logs
        got = sorted((m.from_uid, m.channel_id, m.channel_type) for m in (cag.recv(5), cag.recv(5)))
        assert got == sorted([(u1, ag, 11), (u2, ag, 11)])  # RECV channel_id: the agent uid (as in WuKongIM)
        # the agent replies into u1's chat (its stored id u1@agent)
        st, body = n2.post("/message/send", {"from_uid": ag, "channel_id": f"{u1}@{ag}", "channel_type": 11,
                                             "payload": b64({"type": 1, "content": "agent to u1"})})
        assert st == 200 and body["data"]["message_seq"] == 2, body
        m = c1.recv(5)
        assert (m.from_uid, m.channel_id, m.message_seq) == (ag, ag, 2)
        assert history(n3, u1, ag, 11) == ["from u1", "agent to u1"]
        assert history(n1, u2, ag, 11) == ["from u2"]
        assert history(n2, u2, f"{u2}@{ag}", 11) == ["from u2"]  # the stored id is accepted too
        with pytest.raises(ClientError):
            c2.recv(0.5)  # u2 got nothing of u1's chat
        # msg.notify of agent chats goes to agent.webhook.httpAddr, not to webhook.httpAddr
        main, agent = hooks
        wait_until(lambda: len([m for m in agent.notified() if m["channel_id"] in (f"{u1}@{ag}", f"{u2}@{ag}")]) == 3,
                   10, what="agent msg.notify")
        assert not [m for m in main.notified() if m["channel_type"] == 11]
    finally:
        for c in (c1, c2, cag):
            c.close()


def test_visitor_receives_its_customer_service_replies(cluster):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    staff, visitor = uniq("staff"), uniq("v") + "___vstr"
    tok(n1, staff)
    assert n1.post("/channel", {"channel_id": visitor, "channel_type": 10, "subscribers": [staff]})[0] == 200
    cs_id = f"{visitor}|shop"
    assert n2.post("/channel", {"channel_id": cs_id, "channel_type": 3, "subscribers": [staff]})[0] == 200
    cv = client(n3, visitor, token="")  # visitors connect without a token
    cs = client(n1, staff)
    try:
        assert cv.send(visitor, 10, text("help")).reason_code == 1
        m = cs.recv(5)
        assert (m.from_uid, m.channel_id, m.channel_type) == (visitor, visitor, 10)
        assert cs.send(visitor, 10, text("how can I help")).reason_code == 1
        m = cv.recv(5)
        assert (m.from_uid, m.channel_id, m.channel_type, json.loads(m.payload)["content"]) == \
            (staff, visitor, 10, "how can I help")
        # customer service (3): the visitor is the part before "|"; anyone may send
        assert cs.send(cs_id, 3, text("a reply on the shop channel")).reason_code == 1
        m = cv.recv(5)
        assert (m.from_uid, m.channel_id, m.channel_type) == (staff, cs_id, 3)
        def cs_convs():  # made after the channel's first message (in the background, as for person chats)
            st, convs = n2.post("/conversation/sync", {"uid": visitor, "msg_count": 1})
            assert st == 200
            return [c["channel_id"] for c in convs if c["channel_type"] == 3]
        assert wait_until(cs_convs, 5, what="the visitor's customer-service conversation") == [cs_id]
    finally:
        cv.close()
        cs.close()


def test_cmd_to_subscribers_goes_to_wukongims_temp_channel_ids(cluster):
    n1, n2 = cluster.nodes[1], cluster.nodes[2]
    a, b = uniq("a"), uniq("b")
    tok(n1, a)
    ca = client(n2, a)
    try:
        for no_persist, cid in ((0, subscribers_cmd_channel([a, b])), (1, "systemcmdonline")):
            st, body = n1.post("/message/send", {"header": {"sync_once": 1, "no_persist": no_persist},
                                                 "subscribers": [a, b], "payload": b64({"type": 99, "cmd": "t"})})
            print(f"POST /message/send subscribers no_persist={no_persist} ->", st, body)
            assert (st, body) == (200, {"status": 200})
            m = ca.recv(5)
            assert (m.channel_id, m.channel_type, m.flags & wk.FLAG_SYNC_ONCE, m.message_seq) == \
                (cid, 8, wk.FLAG_SYNC_ONCE, 1 - no_persist)
        assert cmd_sync(n2, a) == []  # as in WuKongIM: temp channels get no CMD rows
    finally:
        ca.close()


def test_message_events_stream_to_binary_and_jsonrpc_clients_and_are_synced(cluster):
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    bin_uid, rpc_uid, js_uid = uniq("bin"), uniq("rpc"), uniq("js")
    tok(n1, bin_uid)
    tok(n1, rpc_uid, flag=2)
    tok(n1, js_uid, flag=1)
    g = group(n1, [bin_uid, rpc_uid, js_uid])
    cb = client(n1, bin_uid)  # binary, protocol v5
    rpc = easy_sdk(f"ws://127.0.0.1:{n3.ports['ws']}", rpc_uid, "tk-" + rpc_uid)
    js = js_sdk(f"ws://127.0.0.1:{n2.ports['ws']}", js_uid, "tk-" + js_uid)
    try:
        rpc.cmd(cmd="connect")
        assert rpc.wait(lambda e: e["event"] in ("connected", "connect_error"))["event"] == "connected"
        js.cmd(cmd="connect")
        assert js.wait(lambda e: e["event"] == "status" and e.get("reasonCode") not in (None, 0), 20)["reasonCode"] == 1
        cmn = uniq("stream-")
        st, body = n1.post("/message/send", {"from_uid": "ai-bot", "channel_id": g, "channel_type": 2, "is_stream": 1,
                                             "client_msg_no": cmn, "payload": b64({"type": 1, "content": ""})})
        assert st == 200, body
        mid = body["data"]["message_id"]
        assert cb.recv(5).client_msg_no == cmn
        posts = [(n1, "e1", "stream.delta", {"kind": "text", "delta": "Hello "}),
                 (n2, "e2", "stream.delta", {"kind": "text", "delta": "world"}),
                 (n3, "e3", "stream.close", {"end_reason": 0})]
        answers = []
        for node, eid, etype, payload in posts:
            st, body = node.post("/message/event", {"channel_id": g, "channel_type": 2, "client_msg_no": cmn,
                                                    "event_id": eid, "event_type": etype, "payload": payload})
            print(f"POST /message/event {etype} via node {node.node_id} ->", st, body)
            assert st == 200, body
            answers.append(body["data"])
        assert [(a["msg_event_seq"], a["stream_status"], a["event_key"], a["from_uid"]) for a in answers] == \
            [(0, "open", "main", "ai-bot"), (0, "open", "main", "ai-bot"), (1, "closed", "main", "ai-bot")]
        got_bin = [cb.events.get(timeout=5) for _ in posts]
        got_rpc = [rpc.wait(lambda e: e["event"] == "customevent", 10, "JSON-RPC event")["params"] for _ in posts]
        for (_n, eid, etype, payload), pb, pr in zip(posts, got_bin, got_rpc):
            data = json.loads(pb.data)
            assert (pb.id, pb.type_name) == (eid, etype)
            assert (pr["id"], pr["type"], pr["data"]) == (eid, etype, data)
            assert {k: data[k] for k in ("client_msg_no", "channel_id", "channel_type", "from_uid", "message_id",
                                         "event_key", "payload")} == \
                {"client_msg_no": cmn, "channel_id": g, "channel_type": 2, "from_uid": "ai-bot", "message_id": mid,
                 "event_key": "main", "payload": payload}
        print("EVENT data seen by the v5 client:", [json.loads(p.data) for p in got_bin][-1])
        st, body = n2.post("/message/eventsync", {"channel_id": g, "channel_type": 2, "client_msg_no": cmn})
        print("POST /message/eventsync ->", st, body)
        assert st == 200
        [row] = body["data"]["events"]
        assert (row["event_key"], row["event_type"], row["payload"]) == \
            ("main", "stream.close", {"kind": "text", "text": "Hello world"})
        st, hist = n3.post("/channel/messagesync", {"login_uid": bin_uid, "channel_id": g, "channel_type": 2})
        [m] = [m for m in hist["messages"] if m["client_msg_no"] == cmn]
        print("event_meta in /channel/messagesync:", m["event_meta"])
        assert m["event_meta"]["events"][0]["snapshot"] == {"kind": "text", "text": "Hello world"}
        assert base64.b64decode(m["stream_data"]) == b"Hello world" and m["end"] == 1
        # the JS SDK 1.0.4 (protocol v2, no EVENT) keeps working
        js.cmd(cmd="send", channelID=g, channelType=2, text="after the stream")
        assert js.wait(lambda e: e["event"] == "sendack", 20, "js sendack")["reasonCode"] == 1
        assert json.loads(cb.recv(5).payload)["content"] == "after the stream"
        st, _ = n1.post("/message/send", {"from_uid": bin_uid, "channel_id": g, "channel_type": 2,
                                          "payload": b64({"type": 1, "content": "to js"})})
        assert js.wait(lambda e: e["event"] == "message" and e.get("text") == "to js", 20, "js receives")
        assert not [e for e in js.seen if e["event"] in ("error", "status") and e.get("status") != "connected"
                    and e["event"] == "error"], js.seen
    finally:
        cb.close()
        rpc.close()
        js.close()


def not_leading(cluster, key: str):
    """A node that does not lead the slot of ``key`` (so its reads are forwarded)."""
    table = cluster.nodes[1].get("/cluster/slots")[1]
    leader = table["slots"][slot_of(key, table["slotCount"])]["leader"]
    return next(n for i, n in cluster.nodes.items() if i != leader)


def test_event_meta_on_every_read_of_3_8_through_a_node_not_leading_the_channel(cluster):
    n1 = cluster.nodes[1]
    member = uniq("m")
    g = group(n1, [member])
    reader = not_leading(cluster, g)
    done, going = uniq("done-"), uniq("going-")
    for cmn in (done, going):
        st, body = n1.post("/message/send", {"from_uid": "ai-bot", "channel_id": g, "channel_type": 2,
                                             "is_stream": 1, "client_msg_no": cmn,
                                             "payload": b64({"type": 1, "content": ""})})
        assert st == 200, body
    st, plain = n1.post("/message/send", {"from_uid": "ai-bot", "channel_id": g, "channel_type": 2,
                                          "payload": b64({"type": 1, "content": "not a stream"})})
    assert st == 200
    for cmn, eid, etype, payload in ((done, "d1", "stream.delta", {"kind": "text", "delta": "All "}),
                                     (done, "d2", "stream.delta", {"kind": "text", "delta": "done"}),
                                     (done, "d3", "stream.close", {"end_reason": 1}),
                                     (going, "g1", "stream.delta", {"kind": "text", "delta": "Half"})):
        st, body = n1.post("/message/event", {"channel_id": g, "channel_type": 2, "client_msg_no": cmn,
                                              "event_id": eid, "event_type": etype, "payload": payload})
        assert st == 200, body
    full = {"kind": "text", "text": "All done"}

    def check(msgs: list, basic: bool = False) -> None:
        by_cmn = {m["client_msg_no"]: m for m in msgs}
        assert "event_meta" not in by_cmn[plain["data"]["client_msg_no"]]
        d, o = by_cmn[done], by_cmn[going]
        [de], [oe] = d["event_meta"]["events"], o["event_meta"]["events"]
        assert (de["event_key"], de["status"], de["last_msg_event_seq"], de.get("end_reason")) == ("main", "closed", 1, 1)
        assert d["event_sync_hint"] == {"client_msg_no": done, "from_msg_event_seq": 0} and d["end"] == 1
        # the open stream: the leader's accumulated deltas (nothing persisted yet)
        assert (oe["status"], o["event_meta"]["open_event_count"]) == ("open", 1)
        assert "end" not in o and "end_reason" not in o  # omitempty, as in WuKongIM
        if basic:
            assert "snapshot" not in de and "snapshot" not in oe and "stream_data" not in d
        else:
            assert de["snapshot"] == full and oe["snapshot"] == {"kind": "text", "text": "Half"}
            assert base64.b64decode(d["stream_data"]) == b"All done"

    req = {"login_uid": member, "channel_id": g, "channel_type": 2, "limit": 10}
    st, hist = reader.post("/channel/messagesync", req)
    assert st == 200, hist
    print(f"POST /channel/messagesync via node {reader.node_id} (not the leader) ->",
          [m for m in hist["messages"] if m["client_msg_no"] == done][0])
    check(hist["messages"])
    st, hist = reader.post("/channel/messagesync", {**req, "event_summary_mode": "basic"})
    assert st == 200
    print("POST /channel/messagesync event_summary_mode=basic ->",
          [m for m in hist["messages"] if m["client_msg_no"] == done][0]["event_meta"])
    check(hist["messages"], basic=True)

    st, convs = reader.post("/conversation/sync", {"uid": member, "msg_count": 5})
    assert st == 200, convs
    [conv] = [c for c in convs if c["channel_id"] == g]
    print("POST /conversation/sync recents[2] ->", conv["recents"][2])
    assert [m["message_seq"] for m in conv["recents"]] == [3, 2, 1]
    check(conv["recents"])

    for order_by_last in (0, 1):
        st, got = reader.post("/conversation/syncMessages", {"uid": member, "msg_count": 5, "order_by_last": order_by_last,
                                                             "channels": [{"channel_id": g, "channel_type": 2,
                                                                           "last_msg_seq": 0}]})
        assert st == 200, got
        [row] = got
        if order_by_last:
            print("POST /conversation/syncMessages order_by_last=1 ->", row)
        assert len(row["messages"]) == 3
        check(row["messages"])

    # not on the reads WuKongIM leaves it off
    st, got = reader.post("/messages", {"login_uid": member, "channel_id": g, "channel_type": 2,
                                        "message_seqs": [1]})
    assert st == 200 and got["messages"] and "event_meta" not in got["messages"][0]


def test_a_master_recvack_of_a_client_sync_once_message_moves_the_chat_read_position(cluster):
    """WuKongIM §1.1/§1.4: a client's SyncOnce SEND is stored as chat; a master device's RECVACK of its RECV
    moves the receiver's chat conversation. Slave devices and RECVACKs without SyncOnce do not."""
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    a, b = uniq("a"), uniq("b")
    tok(n1, a)
    tok(n1, b, flag=1, level=1)  # app: master
    tok(n1, b, flag=2, level=0)  # web: slave
    g = group(n2, [a, b])

    def conv_b() -> dict:
        return [c for c in n3.post("/conversation/sync", {"uid": b, "msg_count": 1})[1] if c["channel_id"] == g][0]

    ca = client(n1, a)
    slave = WKClient(f"127.0.0.1:{n2.ports['tcp']}", b, "tk-" + b, device_flag=2)
    slave.connect()
    master = None
    try:
        assert ca.send(g, 2, text("plain")).reason_code == wk.REASON_SUCCESS
        ack = ca.send(g, 2, text("once, slave only"), flags=wk.FLAG_SYNC_ONCE | wk.FLAG_RED_DOT)
        assert ack.reason_code == wk.REASON_SUCCESS and ack.message_seq == 2
        got = [slave.recv(5), slave.recv(5)]
        assert [m.flags & wk.FLAG_SYNC_ONCE for m in got] == [0, wk.FLAG_SYNC_ONCE]  # RECVACKed by the client
        time.sleep(1.0)  # the slave's RECVACK must not move anything
        assert (conv_b()["unread"], conv_b()["readed_to_msg_seq"]) == (2, 0)

        master = client(n3, b)
        ack = ca.send(g, 2, text("once, master online"), flags=wk.FLAG_SYNC_ONCE | wk.FLAG_RED_DOT)
        assert ack.message_seq == 3
        m = master.recv(5)
        assert (m.message_seq, m.flags & wk.FLAG_SYNC_ONCE) == (3, wk.FLAG_SYNC_ONCE)
        c = wait_until(lambda: (lambda c: c if c["readed_to_msg_seq"] == 3 else None)(conv_b()), 5,
                       what="chat read position moved by the master's RECVACK")
        print("after the master RECVACK of a SyncOnce RECV, /conversation/sync ->",
              {k: c[k] for k in ("channel_id", "unread", "last_msg_seq", "readed_to_msg_seq")})
        assert c["unread"] == 0
        # an ordinary message RECVACKed by the master moves nothing
        assert ca.send(g, 2, text("plain again")).message_seq == 4
        assert master.recv(5).message_seq == 4
        time.sleep(1.0)
        assert (conv_b()["unread"], conv_b()["readed_to_msg_seq"]) == (1, 3)
    finally:
        for cl in (ca, slave, master):
            if cl is not None:
                cl.close()


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
