"""Connection-related endpoints: ``/user/onlinestatus``, ``/route``, ``/route/batch``,
``/varz`` and ``/connz`` (WuKongIM v2.2.5 shapes).

``/user/onlinestatus`` reads presence from Redis, so it answers for users connected to
any node; ``/route`` hands out this node's external addresses (in a cluster behind a
load balancer these are the balancer's); ``/connz`` lists one node's connections
(``node_id`` asks another node over the mesh).
"""
from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import falcon

from api import node_stats
from api.validate import body_of
from mesh.net import wire
from mesh.net.transport import MeshError

DEVICE_NAMES = {0: "App", 1: "Web", 2: "PC"}


def _uid_list(req) -> list[str]:
    uids = body_of(req, list)
    if not all(isinstance(u, str) for u in uids):
        raise falcon.HTTPBadRequest(title="body must be an array of uid strings")
    return uids


class OnlineStatus:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        uids = _uid_list(req)
        if not uids:
            resp.media = {"status": 200}
            return
        try:
            found = self.node.presence.lookup(dict.fromkeys(uids))
        except Exception as exc:
            raise falcon.HTTPServiceUnavailable(title="presence unavailable", description=str(exc)) from None
        out = []
        for uid in dict.fromkeys(uids):
            for _node, _conn, flag, _level in found.get(uid, ()):
                out.append({"uid": uid, "device_flag": flag, "online": 1})
        resp.media = out


def _addrs(cfg, intranet: bool) -> dict:
    if intranet:
        return {"tcp_addr": cfg["intranet.tcpAddr"], "ws_addr": "", "wss_addr": ""}
    return {"tcp_addr": cfg["external.tcpAddr"], "ws_addr": cfg["external.wsAddr"],
            "wss_addr": cfg["external.wssAddr"]}


class Route:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp):
        resp.media = _addrs(self.node.cfg, req.get_param_as_int("intranet", default=0) == 1)


class RouteBatch:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        uids = _uid_list(req)
        resp.media = [{**_addrs(self.node.cfg, req.get_param_as_int("intranet", default=0) == 1), "uids": uids}]


def _uptime(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m}m{sec}s"


class Varz:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp):
        n = self.node
        gw = n.gateway
        sessions = gw.all_sessions()
        cfg = n.cfg
        usage = os.times()
        resp.media = {
            "server_id": str(n.node_id), "server_name": "Skein", "version": n.version,
            "connections": len(sessions), "user_handler_count": len(gw.by_uid),
            "user_handler_conn_count": sum(1 for s in sessions if s.uid), "uptime": _uptime(time.time() - n.started_at),
            "goroutine": 0, "mem": node_stats.rss_bytes(), "cpu": round(usage.user + usage.system, 2),
            "in_msgs": sum(s.in_msgs for s in sessions), "out_msgs": sum(s.out_msgs for s in sessions),
            "in_bytes": sum(s.in_bytes for s in sessions), "out_bytes": sum(s.out_bytes for s in sessions),
            "slow_clients": 0, "retry_queue": sum(len(s.retry or ()) for s in sessions),
            "tcp_addr": cfg["external.tcpAddr"], "ws_addr": cfg["external.wsAddr"], "wss_addr": cfg["external.wssAddr"],
            "manager_addr": cfg["manager.addr"], "manager_on": 1 if cfg["manager.on"] else 0, "commit": "",
            "commit_date": "", "tree_state": "", "api_url": cfg["external.apiUrl"], "manager_uid": "____manager",
            "manager_token_on": 1 if cfg["managerToken"] else 0, "conversation_cache_count": 0,
        }


def connz(node, offset: int, limit: int, sort: str, uid: str) -> dict:
    now = time.monotonic()
    wall = time.time()
    sessions = [s for s in node.gateway.all_sessions() if s.uid and (not uid or uid in s.uid)]
    keys = {"id": lambda s: s.conn_id, "inMsg": lambda s: s.in_msgs, "outMsg": lambda s: s.out_msgs,
            "inBytes": lambda s: s.in_bytes, "outBytes": lambda s: s.out_bytes,
            "uptime": lambda s: -s.created, "idle": lambda s: -s.last_recv}
    base = sort[:-4] if sort.endswith("Desc") else sort
    sessions.sort(key=keys.get(base, keys["id"]), reverse=sort.endswith("Desc"))
    out = []
    for s in sessions[offset:offset + limit]:
        host, _, port = s.remote.rpartition(":")
        out.append({
            "id": s.conn_id, "uid": s.uid, "ip": host, "port": int(port) if port.isdigit() else 0,
            "last_activity": datetime.fromtimestamp(wall - (now - s.last_recv), UTC).isoformat(),
            "uptime": _uptime(now - s.created), "idle": _uptime(now - s.last_recv), "pending_bytes": 0,
            "in_msgs": s.in_msgs, "out_msgs": s.out_msgs, "in_msg_bytes": s.in_bytes, "out_msg_bytes": s.out_bytes,
            "in_packets": s.in_packets, "out_packets": s.out_packets, "in_packet_bytes": s.in_bytes,
            "out_packet_bytes": s.out_bytes,
            "device": f"{DEVICE_NAMES.get(s.device_flag, str(s.device_flag))}({'主' if s.device_level else '从'})",
            "device_id": s.device_id, "version": s.version, "proxy_type_format": "本地连接",
            "leader_id": node.node_id, "node_id": node.node_id, "transport": s.transport.kind,
        })
    return {"connections": out, "now": datetime.now(UTC).isoformat(), "total": len(sessions),
            "offset": offset, "limit": limit}


class Connz:
    def __init__(self, node) -> None:
        self.node = node
        node.mesh.handle(wire.GW_CONNZ, self._on_connz)

    def _on_connz(self, _sender: int, payload: list) -> dict:
        q = wire.Connz(*payload)
        return connz(self.node, q.offset, q.limit, q.sort, q.uid)

    def on_get(self, req, resp):
        offset = req.get_param_as_int("offset", default=0, min_value=0)
        limit = req.get_param_as_int("limit", default=20, min_value=1, max_value=10000)
        sort = req.get_param("sort") or "id"
        uid = req.get_param("uid") or ""
        target = req.get_param_as_int("node_id", default=self.node.node_id)
        if target == self.node.node_id:
            resp.media = connz(self.node, offset, limit, sort, uid)
            return
        if target not in self.node.view.members:
            raise falcon.HTTPBadRequest(title=f"node {target} is not a live member")
        try:
            resp.media = self.node.mesh.request(target, wire.GW_CONNZ, wire.Connz(offset, limit, sort, uid),
                                                timeout=3.0)
        except MeshError as exc:
            raise falcon.HTTPServiceUnavailable(title=f"node {target} did not answer", description=str(exc)) from None


def register(app: falcon.App, node) -> None:
    app.add_route("/user/onlinestatus", OnlineStatus(node))
    app.add_route("/route", Route(node))
    app.add_route("/route/batch", RouteBatch(node))
    app.add_route("/varz", Varz(node))
    app.add_route("/connz", Connz(node))
