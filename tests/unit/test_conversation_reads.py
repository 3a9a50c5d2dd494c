"""Pure rules of /conversation/syncByChannels and /conversation/syncMessages, and /cluster/nodes' uptime format."""
from __future__ import annotations

from mesh.im.conversations import build_by_channels, message_window, unread_of


def msg(sid: str, ctype: int, seq: int, frm: str, ts: int = 100) -> tuple:
    # (channel, type, seq, mid, from, cmn, ts, flags, setting, expire, topic, payload)
    return (sid, ctype, seq, 1000 + seq, frm, f"c{seq}", ts + seq, 0, 0, 0, "", b"x")


def test_unread_rules():
    assert unread_of(10, 4, 0, "b", "a") == (6, 4)
    assert unread_of(10, 4, 8, "b", "a") == (2, 8)  # read up to the user's own last message
    assert unread_of(10, 9, 8, "b", "a") == (1, 9)  # own message older than the read position
    assert unread_of(10, 4, 10, "a", "a") == (0, 10)  # newest is the user's own
    assert unread_of(0, 0, 0, None, "a") == (0, 0)
    assert unread_of(3, 7, 0, "b", "a") == (0, 7)


def test_message_window():
    assert message_window(0, 15, False) == (1, 1, 0)
    assert message_window(7, 15, False) == (1, 7, 0)
    assert message_window(0, 15, True) == (0, 0, 0)  # newest
    assert message_window(1, 15, True) == (0, 0, 0)  # e = 0: newest
    assert message_window(7, 15, True) == (0, 0, 7)  # seqs > 6


def test_build_by_channels_one_element_per_channel_in_order():
    uid = "a"
    wanted = [("g", "g", 2), ("b", "a@b", 1), ("none", "none", 2)]
    rows = {("a@b", 1): ["a@b", 1, 2, 0, 50, 60], ("none", 2): ["none", 2, 0, 0, 70, 80]}
    summaries = {("g", 2): (3, [msg("g", 2, 3, "a"), msg("g", 2, 2, "b")], 3),
                 ("a@b", 1): (5, [msg("a@b", 1, 5, "b")], 4)}
    g, b, none = build_by_channels(uid, wanted, rows, summaries)
    assert (g["channel_id"], g["unread"], g["readed_to_msg_seq"], g["last_msg_seq"]) == ("g", 0, 3, 3)
    assert [m["message_seq"] for m in g["recents"]] == [3, 2]
    assert (b["channel_id"], b["unread"], b["readed_to_msg_seq"]) == ("b", 1, 4)
    assert b["version"] == b["timestamp"] * 1_000_000_000 == 105 * 1_000_000_000
    assert b["last_client_msg_no"] == "c5" and b["offset_msg_seq"] == 0
    assert (none["last_msg_seq"], none["unread"], none["recents"], none["timestamp"]) == (0, 0, [], 0)
    assert none["version"] == 80 * 1_000_000_000  # the row's updated_at when there is no message


def test_uptime_as_wukongim_prints_it():
    from api.cluster_shapes import go_duration

    assert [go_duration(x) for x in (0, 4, 184, 3600, 93784)] == ["0s", "4s", "3m4s", "1h0m0s", "1d2h3m4s"]
