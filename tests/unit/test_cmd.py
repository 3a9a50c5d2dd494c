"""CMD messages, pure parts: storage ids, slot placement, the slot state's CMD rows, sync windows,
and the routes' disableCMDMessageSync short cut."""
from __future__ import annotations

import falcon
import falcon.testing

from api import cmd_sync
from coordinator.slot_table import slot_of
from mesh.im import cmd
from mesh.im.channel_rules import GROUP, PERSON, cmd_base, cmd_channel, fake_channel_id, is_cmd, storage_id
from mesh.im.messages import message_resp
from mesh.im.slot_state import SlotState
from mesh.net import wire


def test_cmd_ids_and_placement():
    assert cmd_channel("g1") == "g1____cmd" and cmd_channel("g1____cmd") == "g1____cmd"
    assert is_cmd("g1____cmd") and not is_cmd("g1") and cmd_base("g1____cmd") == "g1"
    assert storage_id(GROUP, "g1____cmd", "u1") == "g1____cmd"
    assert storage_id(PERSON, "u2____cmd", "u1") == fake_channel_id("u1", "u2") + "____cmd"
    for key in ("g1", "u1@u2", "x"):
        assert slot_of(key + "____cmd", 64) == slot_of(key, 64)


def test_message_resp_channel_id_of_cmd_rows():
    data = ["u2@u1____cmd", PERSON, 1, 7, "u1", "c", 0, 4, 0, 0, "", b"{}"]
    assert message_resp(data)["channel_id"] == "u1____cmd"  # WuKongIM's quirk (§1.9)
    data = ["g1____cmd", GROUP, 1, 7, "____system", "c", 0, 4, 0, 0, "", b"{}"]
    r = message_resp(data)
    assert (r["channel_id"], r["from_uid"], r["header"]["sync_once"]) == ("g1____cmd", "", 1)


def state_with_group() -> SlotState:
    s = SlotState(0)
    s.apply_op(1, wire.OP_CHANNEL_SUBSCRIBERS, {"id": "g1", "type": GROUP, "add": ["a", "b", "____system"]})
    return s


def test_rows_are_missing_until_ensured_and_the_sender_has_read_its_message():
    s = state_with_group()
    assert cmd.missing_rows(s, "g1____cmd", GROUP, 3, "a") == [["a", 3], ["b", 0]]
    s.apply_op(2, wire.OP_CHANNEL_CONV_ENSURED, {"id": "g1____cmd", "type": GROUP, "uids": ["a", "b"]})
    assert cmd.missing_rows(s, "g1____cmd", GROUP, 4, "a") == []
    assert cmd.recipients(s, "u1@____system____cmd", PERSON) == ["u1"]


def test_read_positions_move_forward_only_and_syncack_applies_the_last_window():
    s = SlotState(0)
    assert s.apply_op(1, wire.OP_CMD_ENSURE, {"id": "g1____cmd", "type": 2, "rows": [["b", 0]]}) == 1
    assert s.apply_op(2, wire.OP_CMD_ENSURE, {"id": "g1____cmd", "type": 2, "rows": [["b", 9]]}) == 0
    s.apply_op(3, wire.OP_CMD_SYNCED, {"uid": "b", "record": [["g1____cmd", 2, 5], ["nope____cmd", 2, 3]]})
    s.apply_op(4, wire.OP_CMD_SYNCED, {"uid": "b", "record": [["g1____cmd", 2, 4]]})  # a newer sync replaces
    assert s.apply_op(5, wire.OP_CMD_ACK, {"uid": "b"}) == 1
    assert s.cmd["b"][("g1____cmd", 2)] == 4
    assert s.apply_op(6, wire.OP_CMD_ACK, {"uid": "b"}) == 0  # the window was used up
    assert s.apply_op(7, wire.OP_CMD_READ, {"uid": "b", "id": "g1____cmd", "type": 2, "seq": 3}) is False
    assert s.apply_op(8, wire.OP_CMD_READ, {"uid": "b", "id": "g1____cmd", "type": 2, "seq": 6}) is True
    assert s.apply_op(9, wire.OP_CMD_READ, {"uid": "x", "id": "g1____cmd", "type": 2, "seq": 6}) is False
    again = SlotState.from_snapshot(0, s.to_snapshot())
    assert again.cmd == s.cmd and again.cmd_synced == s.cmd_synced


def test_system_uids_in_the_slot_state():
    s = SlotState(0)
    assert s.apply_op(4, wire.OP_SYSUID, {"add": ["bot", "b2"]}) == [4, ["b2", "bot"]]
    assert s.apply_op(5, wire.OP_SYSUID, {"remove": ["b2"]}) == [5, ["bot"]]
    assert SlotState.from_snapshot(0, s.to_snapshot()).system_uids == {"bot"}


def test_take_concatenates_up_to_the_limit_and_records_the_window():
    m = lambda seq: ["c", 2, seq, 0, "u", "", 0, 4, 0, 0, "", b""]  # noqa: E731
    msgs, record = cmd.take([("x____cmd", 2, [m(1), m(2)]), ("y____cmd", 2, []), ("z____cmd", 1, [m(7), m(8)])], 3)
    assert [x[2] for x in msgs] == [1, 2, 7]
    assert record == [["x____cmd", 2, 2], ["z____cmd", 1, 7]]


class _Node:
    cfg = {"disableCMDMessageSync": True}

    @property
    def cmd(self):
        raise AssertionError("no work when disableCMDMessageSync")


def test_disable_cmd_message_sync_answers_without_work():
    app = falcon.App()
    cmd_sync.register(app, _Node())
    c = falcon.testing.TestClient(app)
    r = c.simulate_post("/message/sync", json={"uid": "u1"})
    assert (r.status_code, r.json) == (200, [])
    r = c.simulate_post("/message/syncack", json={"uid": "u1", "last_message_seq": 3})
    assert (r.status_code, r.json) == (200, {"status": 200})
    assert c.simulate_post("/message/syncack", json={"uid": "u1", "last_message_seq": 0}).status_code == 400


def test_agent_and_visitor_ids():
    from mesh.im.channel_rules import AGENT, CUSTOMER_SERVICE, VISITORS, visitor_of

    assert storage_id(AGENT, "ag", "u1") == "u1@ag" and storage_id(AGENT, "u1@ag", "ag") == "u1@ag"
    assert storage_id(AGENT, "ag____cmd", "u1") == "u1@ag____cmd"
    assert visitor_of(VISITORS, "v1") == "v1" and visitor_of(CUSTOMER_SERVICE, "v1|shop") == "v1"
    assert visitor_of(CUSTOMER_SERVICE, "shop") == "" and visitor_of(GROUP, "g|x") == ""
    s = SlotState(0)
    s.apply_op(1, wire.OP_CHANNEL_SUBSCRIBERS, {"id": "v1", "type": VISITORS, "add": ["staff"]})
    assert cmd.recipients(s, "v1____cmd", VISITORS) == ["staff", "v1"]
    assert cmd.recipients(s, "u1@ag____cmd", AGENT) == ["u1", "ag"]


def test_subscribers_cmd_channel_is_wukongims_fnv1a_id():
    from mesh.im.channel_rules import subscribers_cmd_channel

    assert subscribers_cmd_channel(["u1", "u2"]) == "17922244540036557902____cmd"
    assert subscribers_cmd_channel(["u2", "u1"]) == "5981087602159037568____cmd"


def test_a_master_recvack_moves_the_cmd_row_or_for_a_client_sync_once_the_chat_conversation():
    calls = []

    class Router:
        def call(self, key, method, args):
            calls.append((key, method, args))

    class Node:
        router = Router()

    sync = cmd.CmdSync(Node())
    sync.read("u1", "g1____cmd", GROUP, 4)
    sync.read("u1", "g1", GROUP, 7)
    (k1, m1, a1), (k2, m2, a2) = calls
    assert (k1, m1, a1) == ("u1", wire.CMD_READ, {"uid": "u1", "id": "g1____cmd", "type": GROUP, "seq": 4})
    assert (k2, m2) == ("u1", wire.CONV_SET)
    assert {k: a2[k] for k in ("uid", "id", "type", "read_seq", "raise_only", "if_exists")} == \
        {"uid": "u1", "id": "g1", "type": GROUP, "read_seq": 7, "raise_only": True, "if_exists": True}
    # applied in the uid's slot: only forward, never creating a row
    s = SlotState(0)
    assert s.apply_op(1, wire.OP_CONV_SET, a2) is False and "u1" not in s.convs
    s.apply_op(2, wire.OP_CONV_SET, {"uid": "u1", "id": "g1", "type": GROUP, "read_seq": 9, "now": 1})
    assert s.apply_op(3, wire.OP_CONV_SET, a2) is False and s.convs["u1"][("g1", GROUP)].read_seq == 9
