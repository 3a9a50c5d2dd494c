"""The OpenAPI 3 document of the HTTP API (served at ``GET /openapi.json``, kept in docs/).

``python -m api.openapi > docs/openapi.json`` regenerates the file; a test keeps the
two equal and runs schemathesis against the served document.
"""
from __future__ import annotations

import json
import sys

UID = {"type": "string", "minLength": 1, "maxLength": 64}
CTYPE = {"type": "integer", "minimum": 0, "maximum": 255}
FLAG01 = {"type": "integer", "enum": [0, 1]}
UIDS = {"type": "array", "items": UID, "maxItems": 200}
STATUS = {"type": "object", "properties": {"status": {"type": "integer"}}, "required": ["status"]}
ERROR = {"type": "object", "properties": {"msg": {"type": "string"}, "status": {"type": "integer"}}}
HEADER = {"type": "object", "properties": {"no_persist": FLAG01, "red_dot": FLAG01, "sync_once": FLAG01}}
MESSAGE = {"type": "object", "properties": {
    "header": HEADER, "setting": {"type": "integer"}, "message_id": {"type": "integer"},
    "message_idstr": {"type": "string"}, "client_msg_no": {"type": "string"}, "message_seq": {"type": "integer"},
    "from_uid": {"type": "string"}, "channel_id": {"type": "string"}, "channel_type": {"type": "integer"},
    "expire": {"type": "integer"}, "timestamp": {"type": "integer"}, "payload": {"type": "string"},
    "topic": {"type": "string"}}}
MESSAGES = {"type": "object", "properties": {
    "start_message_seq": {"type": "integer"}, "end_message_seq": {"type": "integer"}, "more": {"type": "integer"},
    "messages": {"type": "array", "items": MESSAGE}}}
CHANNEL = {"channel_id": UID, "channel_type": CTYPE}


def obj(props: dict, required: list[str] | None = None) -> dict:
    o = {"type": "object", "properties": props}
    if required:
        o["required"] = required
    return o


def post(summary: str, body: dict, ok: dict, *, tag: str) -> dict:
    return {"post": {
        "summary": summary, "tags": [tag],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            "400": {"description": "Bad request", "content": {"application/json": {"schema": ERROR}}},
            "401": {"description": "managerToken missing or wrong"},
            "403": {"description": "Refused by a permission check"},
            "503": {"description": "Retry required (no slot leader right now) or not ready"},
        }}}


def get(summary: str, params: list[tuple[str, dict, bool]], ok: dict, *, tag: str) -> dict:
    return {"get": {
        "summary": summary, "tags": [tag],
        "parameters": [{"name": n, "in": "query", "required": r, "schema": s} for n, s, r in params],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            "400": {"description": "Bad request", "content": {"application/json": {"schema": ERROR}}},
            "401": {"description": "managerToken missing or wrong"},
            "503": {"description": "Retry required or not ready"},
        }}}


def spec() -> dict:
    paths: dict = {}
    u = "users"
    paths["/user/token"] = post("Set the token of one device of a user", obj(
        {"uid": UID, "token": {"type": "string", "minLength": 1}, "device_flag": {"type": "integer", "minimum": 0,
                                                                                 "maximum": 255},
         "device_level": FLAG01}, ["uid", "token"]), STATUS, tag=u)
    paths["/user/device_quit"] = post("Log a device out", obj(
        {"uid": UID, "device_flag": {"type": "integer", "minimum": -1, "maximum": 255}}, ["uid"]), STATUS, tag=u)
    paths["/user/onlinestatus"] = post("Which of these users are online", UIDS, {"type": "array", "items": obj(
        {"uid": {"type": "string"}, "device_flag": {"type": "integer"}, "online": {"type": "integer"}})}, tag=u)
    c = "channels"
    info = {"large": FLAG01, "ban": FLAG01, "disband": FLAG01, "send_ban": FLAG01, "allow_stranger": FLAG01}
    paths["/channel"] = post("Create or update a channel (and add subscribers)", obj(
        {**CHANNEL, **info, "reset": FLAG01, "subscribers": UIDS}, ["channel_id", "channel_type"]), STATUS, tag=c)
    paths["/channel/info"] = post("Update a channel's flags", obj({**CHANNEL, **info},
                                                                  ["channel_id", "channel_type"]), STATUS, tag=c)
    paths["/channel/delete"] = post("Disband a channel", obj(CHANNEL, ["channel_id", "channel_type"]), STATUS, tag=c)
    paths["/channel/subscriber_add"] = post("Add subscribers", obj(
        {**CHANNEL, "reset": FLAG01, "temp_subscriber": FLAG01, "subscribers": UIDS},
        ["channel_id", "subscribers"]), STATUS, tag=c)
    paths["/channel/subscriber_remove"] = post("Remove subscribers", obj(
        {**CHANNEL, "subscribers": UIDS}, ["channel_id", "channel_type", "subscribers"]), STATUS, tag=c)
    for name in ("blacklist", "whitelist"):
        for mode in ("add", "set", "remove"):
            paths[f"/channel/{name}_{mode}"] = post(f"{name} {mode}", obj(
                {**CHANNEL, "uids": UIDS}, ["channel_id", "channel_type"]), STATUS, tag=c)
    for name in ("subscriber", "blacklist", "whitelist"):
        paths[f"/channel/{name}_remove_all"] = post(f"Empty the channel's {name} list", obj(
            CHANNEL, ["channel_id", "channel_type"]), STATUS, tag=c)
    paths["/channel/whitelist"] = get("A channel's allow list", [("channel_id", UID, True), ("channel_type", CTYPE,
                                                                                           False)],
                                      {"type": "array", "items": obj({"id": {"type": "integer"},
                                                                      "uid": {"type": "string"}})}, tag=c)
    m = "messages"
    paths["/message/send"] = post("Send a message (answered once durable)", obj(
        {"header": HEADER, "client_msg_no": {"type": "string", "maxLength": 128}, "from_uid": {"type": "string"},
         **CHANNEL, "expire": {"type": "integer", "minimum": 0}, "subscribers": UIDS, "is_stream": FLAG01,
         "payload": {"type": "string", "format": "byte"}}, ["payload"]),
        obj({"status": {"type": "integer"}, "data": obj({"message_id": {"type": "integer"},
                                                         "client_msg_no": {"type": "string"},
                                                         "message_seq": {"type": "integer"}})}), tag=m)
    paths["/message/send"]["post"]["responses"]["429"] = {
        "description": "Over the rate limit of the from_uid or the API token (Retry-After says when to retry)",
        "content": {"application/json": {"schema": ERROR}}}
    paths["/message/sendbatch"] = post("Queue one person message from from_uid to each subscriber (answered once queued)", obj(
        {"header": HEADER, "from_uid": UID, "subscribers": UIDS, "payload": {"type": "string", "format": "byte"}},
        ["from_uid", "subscribers", "payload"]),
        obj({"fail_uids": {"type": "array", "items": {"type": "string"}},
             "reason": {"type": "array", "items": {"type": "string"}}}), tag=m)
    paths["/channel/messagesync"] = post("Messages of a channel by seq range", obj(
        {"login_uid": UID, **CHANNEL, "start_message_seq": {"type": "integer", "minimum": 0},
         "end_message_seq": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 0},
         "pull_mode": FLAG01}, ["login_uid", "channel_id", "channel_type"]), MESSAGES, tag=m)
    paths["/messages"] = post("Messages of a channel by seq, id or client_msg_no", obj(
        {"login_uid": UID, **CHANNEL, "message_seqs": {"type": "array", "items": {"type": "integer"}},
         "message_ids": {"type": "array", "items": {"type": "integer"}},
         "client_msg_nos": {"type": "array", "items": {"type": "string"}}}, ["channel_id", "channel_type"]),
        MESSAGES, tag=m)
    paths["/message"] = post("One message by id or client_msg_no", obj(
        {"login_uid": UID, **CHANNEL, "message_id": {"type": "integer"}, "client_msg_no": {"type": "string"}},
        ["channel_id", "channel_type"]), {"oneOf": [MESSAGE, STATUS]}, tag=m)
    paths["/channel/max_message_seq"] = get("The channel's last seq", [
        ("channel_id", UID, True), ("channel_type", CTYPE, True), ("login_uid", UID, False)],
        obj({"message_seq": {"type": "integer"}}), tag=m)
    paths["/channel/last_message"] = get("The channel's newest message (or {status: 404})", [
        ("channel_id", UID, True), ("channel_type", CTYPE, True), ("login_uid", UID, False)],
        {"oneOf": [MESSAGE, STATUS]}, tag=m)
    paths["/message/byclientmsgno"] = get("A message by client_msg_no in a stored channel (or {status: 404})", [
        ("channel_id", UID, True), ("channel_type", CTYPE, True), ("client_msg_no", {"type": "string"}, True)],
        {"oneOf": [MESSAGE, STATUS]}, tag=m)
    paths["/message/sync"] = post("A user's unread CMD messages (sync_once sends), across channels", obj(
        {"uid": UID, "message_seq": {"type": "integer", "minimum": 0},
         "limit": {"type": "integer", "minimum": 0, "maximum": 10000}}, ["uid"]),
        {"type": "array", "items": MESSAGE}, tag=m)
    paths["/message/syncack"] = post("Mark the CMD messages of the user's last /message/sync read", obj(
        {"uid": UID, "last_message_seq": {"type": "integer", "minimum": 1}}, ["uid", "last_message_seq"]), STATUS,
        tag=m)
    paths["/message/event"] = post("Append an event to a stream message (is_stream=1)", obj(
        {**CHANNEL, "from_uid": {"type": "string"}, "message_id": {"type": "integer"},
         "client_msg_no": {"type": "string", "minLength": 1, "maxLength": 128},
         "event_id": {"type": "string", "minLength": 1, "maxLength": 128},
         "event_type": {"type": "string", "minLength": 1, "maxLength": 64}, "event_key": {"type": "string"},
         "visibility": {"type": "string"}, "occurred_at": {"type": "integer"}, "payload": {}},
        ["channel_id", "client_msg_no", "event_id", "event_type"]),
        obj({"status": {"type": "integer"}, "data": {"type": "object"}}), tag=m)
    paths["/message/eventsync"] = post("The event keys of a stream message (projection)", obj(
        {**CHANNEL, "from_uid": {"type": "string"}, "client_msg_no": {"type": "string", "minLength": 1},
         "event_key": {"type": "string"}, "from_msg_event_seq": {"type": "integer", "minimum": 0},
         "limit": {"type": "integer", "minimum": 0, "maximum": 2000}, "include_private": FLAG01},
        ["channel_id", "client_msg_no"]), obj({"status": {"type": "integer"}, "data": {"type": "object"}}), tag=m)
    paths["/user/systemuids_add"] = post("Add system accounts", obj({"uids": UIDS}, ["uids"]), STATUS, tag=u)
    paths["/user/systemuids_remove"] = post("Remove system accounts", obj({"uids": UIDS}, ["uids"]), STATUS, tag=u)
    paths["/user/systemuids"] = get("The added system accounts (null when none)", [],
                                    {"type": "array", "items": {"type": "string"}, "nullable": True}, tag=u)
    v = "conversations"
    conv = obj({"channel_id": {"type": "string"}, "channel_type": {"type": "integer"}, "unread": {"type": "integer"},
                "timestamp": {"type": "integer"}, "last_msg_seq": {"type": "integer"},
                "last_client_msg_no": {"type": "string"}, "offset_msg_seq": {"type": "integer"},
                "readed_to_msg_seq": {"type": "integer"}, "version": {"type": "integer"},
                "recents": {"type": "array", "items": MESSAGE}})
    paths["/conversation/sync"] = post("A user's conversations with unread counts", obj(
        {"uid": UID, "version": {"type": "integer"}, "last_msg_seqs": {"type": "string"},
         "msg_count": {"type": "integer", "minimum": 0, "maximum": 10000}, "only_unread": FLAG01,
         "exclude_channel_types": {"type": "array", "items": {"type": "integer"}},
         "page": {"type": "integer", "minimum": 0}, "page_size": {"type": "integer", "minimum": 1}}, ["uid"]),
        {"type": "array", "items": conv}, tag=v)
    count = {"type": "integer", "minimum": -1000, "maximum": 10000}
    paths["/conversation/syncMessages"] = post("Per stored channel, a window of messages", obj(
        {"uid": {"type": "string"}, "msg_count": count, "order_by_last": FLAG01,
         "channels": {"type": "array", "maxItems": 50, "items": obj(
             {"channel_id": UID, "channel_type": CTYPE,
              "last_msg_seq": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
             ["channel_id"])}}),
        {"type": "array", "items": obj({"channel_id": {"type": "string"}, "channel_type": {"type": "integer"},
                                        "messages": {"type": "array", "items": MESSAGE},
                                        "user_last_msg_seq": {"type": "integer"}})}, tag=v)
    paths["/conversation/channels"] = post("A user's chat conversations (stored ids)", obj(
        {"uid": {"type": "string"}}), {"type": "array", "items": obj(
            {"channel_id": {"type": "string"}, "channel_type": {"type": "integer"}})}, tag=v)
    paths["/conversation/syncByChannels"] = post("Conversations of the channels asked, in order", obj(
        {"uid": UID, "msg_count": count, "channels": {"type": "array", "minItems": 1, "maxItems": 50, "items": obj(
            CHANNEL, ["channel_id"])}}, ["uid", "channels"]), {"type": "array", "items": conv}, tag=v)
    target = obj({"uid": UID, **CHANNEL, "message_seq": {"type": "integer"}}, ["uid", "channel_id", "channel_type"])
    paths["/conversations/clearUnread"] = post("Mark a conversation read", target, STATUS, tag=v)
    paths["/conversations/setUnread"] = post("Set a conversation's unread count", obj(
        {"uid": UID, **CHANNEL, "unread": {"type": "integer"}}, ["uid", "channel_id", "channel_type"]), STATUS,
        tag=v)
    paths["/conversations/delete"] = post("Hide a conversation's history", target, STATUS, tag=v)
    r = "routing"
    addrs = {"tcp_addr": {"type": "string"}, "ws_addr": {"type": "string"}, "wss_addr": {"type": "string"}}
    paths["/route"] = get("Where clients connect", [("uid", UID, False), ("intranet", FLAG01, False)], obj(addrs),
                          tag=r)
    paths["/route/batch"] = post("Where these users connect", UIDS,
                                 {"type": "array", "items": obj({**addrs, "uids": UIDS})}, tag=r)
    paths["/varz"] = get("Node statistics", [], {"type": "object"}, tag="ops")
    paths["/varz/setting"] = get("Which monitoring pages a manager shows", [], obj(
        {"logger": obj({"trace_on": FLAG01, "loki_on": FLAG01}), "prometheus_on": FLAG01, "stress_on": FLAG01}),
        tag="ops")
    conn = obj({"uid": {"type": "string"}, "conn_id": {"type": "integer", "minimum": 0},
                "node_id": {"type": "integer", "minimum": 0}, "op_node_id": {"type": "integer", "minimum": 0}})
    paths["/conn/kick"] = post("DISCONNECT (server kick) and close one connection, on any node", conn, STATUS,
                               tag="ops")
    paths["/conn/remove"] = post("Close one connection, on any node, without DISCONNECT", conn, STATUS, tag="ops")
    paths["/connz"] = get("Connections of a node", [
        ("offset", {"type": "integer", "minimum": 0}, False), ("limit", {"type": "integer", "minimum": 1}, False),
        ("uid", {"type": "string"}, False)], {"type": "object"}, tag="ops")
    paths["/health"] = get("Ready to serve (200) or not (503)", [], {"type": "object"}, tag="ops")
    paths["/cluster/nodes"] = get("Cluster members", [], {"type": "object"}, tag="cluster")
    paths["/cluster/status"] = get("Cluster status", [], {"type": "object"}, tag="cluster")
    paths["/cluster/slots"] = get("The slot table", [], {"type": "object"}, tag="cluster")
    nodes = obj({"total": {"type": "integer"}, "data": {"type": "array", "items": {"type": "object"}}})
    paths["/cluster/simpleNodes"] = get("WuKongIM's node list from the cluster config", [], nodes, tag="cluster")
    paths["/cluster/node"] = get("WuKongIM's NodeConfig of the node answering", [], {"type": "object"},
                                 tag="cluster")
    paths["/cluster/allslot"] = get("Every slot as WuKongIM's SlotResp", [], nodes, tag="cluster")
    paths["/cluster/raft/status"] = get("Per slot: term, leader, commit and applied index, replicas' lag", [],
                                        obj({"total": {"type": "integer"}, "slots": {"type": "array"}}),
                                        tag="cluster")
    return {
        "openapi": "3.0.3",
        "info": {"title": "Skein HTTP API (WuKongIM v2.2.5 compatible)", "version": "0.1.0"},
        "components": {"securitySchemes": {"managerToken": {"type": "apiKey", "in": "header", "name": "token"}}},
        "security": [{"managerToken": []}, {}],
        "paths": paths,
    }


class OpenApi:
    def __init__(self) -> None:
        self.body = json.dumps(spec(), indent=2, sort_keys=True)

    def on_get(self, req, resp):
        resp.content_type = "application/json"
        resp.text = self.body


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(json.dumps(spec(), indent=2, sort_keys=True) + "\n")
