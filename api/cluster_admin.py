"""Cluster admin API: `/cluster/nodes`, `/cluster/status`, `/cluster/slots` and friends.

Shapes follow the WuKongIM cluster guide (`/cluster/nodes` gives
``{"leader": <controller id>, "nodes": [{"id", "addr", "status", "last_heartbeat", ...}]}``,
`/cluster/status` gives ``{"status": "healthy" | ...}``).
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

import falcon
import gevent
import gevent.pool

from mesh.transport import MeshError


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ClusterNodes:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        node = self.node
        view = node.view
        members = dict(view.members)
        table = view.table
        rtts: dict[int, float | None] = {}
        errors: dict[int, str] = {}

        def ping(pid: int) -> None:
            try:
                rtts[pid] = node.mesh.ping(pid, timeout=node.cfg["cluster.pingTimeout"])
            except MeshError as exc:
                rtts[pid] = None
                errors[pid] = str(exc)

        pool = gevent.pool.Pool(32)
        for pid in members:
            if pid != node.node_id:
                pool.spawn(ping, pid)
        pool.join(timeout=node.cfg["cluster.pingTimeout"] + 0.5)
        leaders = table.leader_counts(members) if table else {}
        replicas = table.member_counts(members) if table else {}
        out = []
        for pid in sorted(members):
            info = members[pid]
            me = pid == node.node_id
            rtt = 0.0 if me else rtts.get(pid)
            out.append({
                "id": pid,
                "addr": info.get("serverAddr"),
                "status": "leader" if view.controller == pid else "follower",
                "online": True,
                "reachable": me or rtt is not None,
                "rtt_ms": None if rtt is None else round(rtt * 1000, 3),
                "last_heartbeat": iso(time.time() if me else node.mesh.last_heartbeat(pid)),
                "api_url": info.get("apiUrl"),
                "tcp_addr": info.get("tcpAddr"),
                "ws_addr": info.get("wsAddr"),
                "manager_addr": info.get("managerAddr"),
                "started_at": info.get("started_at"),
                "slots_led": leaders.get(pid, 0),
                "slot_replicas": replicas.get(pid, 0),
                "draining": pid in view.draining,
                "error": errors.get(pid),
            })
        offline = sorted({m for s in (table.slots if table else []) for m in s.members()} - set(members))
        resp.media = {"leader": view.controller, "nodes": out, "offline": offline}


class ClusterStatus:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        node = self.node
        view = node.view
        table = view.table
        live = view.live()
        slots = table.slots if table else []
        with_leader = sum(1 for s in slots if s.leader in live)
        ok, reasons = node.health()
        if not table or with_leader < len(slots):
            status = "unavailable" if with_leader == 0 else "degraded"
        elif not ok:
            status = "degraded"
        else:
            status = "healthy"
        resp.media = {
            "status": status,
            "node_id": node.node_id,
            "controller": view.controller,
            "members": sorted(live),
            "minimum_nodes": node.cfg["cluster.minimumNodes"],
            "slot_table_version": table.version if table else 0,
            "slots": {"total": len(slots), "with_live_leader": with_leader,
                      "led_here": sum(1 for s in slots if s.leader == node.node_id)},
            "health": {"ok": ok, "reasons": reasons},
        }


class ClusterSlots:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = self.node.view
        table = view.table
        if table is None:
            resp.media = {"version": 0, "slotCount": 0, "replicaCount": 0, "slots": []}
            return
        live = view.live()
        slots = []
        for s in table.slots:
            st = view.status.get(s.id)
            current = st is not None and st.term == s.term and st.leader == s.leader
            slots.append({**s.to_json(), "leader_live": s.leader in live,
                          "ready": bool(current and st.ready),
                          "in_sync": sorted(st.in_sync) if current else []})
        resp.media = {"version": table.version, "slotCount": table.slot_count,
                      "replicaCount": table.replica_count, "slots": slots}


class TransferLeadership:
    """`POST /cluster/transfer-leadership {"target_node": id}`: move the controller role."""

    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.get_media(default_when_empty=None)
        target = body.get("target_node") if isinstance(body, dict) else None
        if not isinstance(target, int) or isinstance(target, bool):
            raise falcon.HTTPBadRequest(title="target_node (integer node id) is required")
        view = self.node.view
        if target not in view.members:
            raise falcon.HTTPBadRequest(title=f"node {target} is not a live member")
        if view.controller == target:
            resp.media = {"status": 200, "leader": target}
            return
        deadline = time.time() + 5
        result = None
        while not result and time.time() < deadline:
            result = self.node.request_controller("transfer_controller", target)
            if not result:
                gevent.sleep(0.2)
        if not result:
            raise falcon.HTTPServiceUnavailable(title="controller did not hand over; retry")
        while time.time() < deadline and self.node.view.controller != target:
            gevent.sleep(0.05)
        resp.media = {"status": 200, "leader": self.node.view.controller}
