"""Cluster admin API: `/cluster/nodes`, `/cluster/status`, `/cluster/slots` and friends.

Shapes follow the WuKongIM cluster guide (`/cluster/nodes` gives
``{"leader": <controller id>, "nodes": [{"id", "addr", "status", "last_heartbeat", ...}]}``,
`/cluster/status` gives ``{"status": "healthy" | ...}``); `/cluster/nodes` also carries
WuKongIM's ``{"total", "data"}`` (``api/cluster_shapes.py``).
"""
from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

import falcon
import gevent
import gevent.pool

from api.cluster_shapes import leaders_info, node_configs
from mesh.net import wire
from mesh.net.transport import MeshError


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ClusterNodes:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        ClusterNodesAdd(self.node).on_post(req, resp)

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
        data = node_configs(node)
        resp.media = {"leader": view.controller, "nodes": out, "offline": offline, "total": len(data), "data": data}


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
            result = self.node.request_controller(wire.TRANSFER_CONTROLLER, target)
            if not result:
                gevent.sleep(0.2)
        if not result:
            raise falcon.HTTPServiceUnavailable(title="controller did not hand over; retry")
        while time.time() < deadline and self.node.view.controller != target:
            gevent.sleep(0.05)
        resp.media = {"status": 200, "leader": self.node.view.controller}


class ClusterReplication:
    """`GET /cluster/replication`: per slot the leader, term and each replica's log index and lag."""

    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp):
        table = self.node.view.table
        infos = leaders_info(self.node)
        slots = []
        for s in (table.slots if table else []):
            info = infos.get(s.id)
            replicas = []
            for m in s.members():
                if info and m == info["leader"]:
                    idx = info["last_index"]
                elif info:
                    idx = info["match"].get(m, info["match"].get(str(m), 0))
                else:
                    idx = None
                lag = (info["commit_index"] - idx) if (info and idx is not None) else None
                replicas.append({"node": m, "role": "learner" if m in s.learners else "voter",
                                 "log_index": idx, "lag": max(lag, 0) if lag is not None else None,
                                 "live": m in self.node.view.members})
            slots.append({"slot": s.id, "leader": s.leader, "term": s.term,
                          "commit_index": info["commit_index"] if info else None,
                          "ready": bool(info and info["ready"]), "replicas": replicas})
        resp.media = {"slots": slots}


class ClusterDataVersion:
    """`GET /cluster/data/version`: per slot the last log index (this node's view, and the leader's)."""

    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp):
        local = {r["slot"]: r for r in self.node.replication.info()}
        infos = leaders_info(self.node)
        table = self.node.view.table
        slots = []
        for s in (table.slots if table else []):
            mine = local.get(s.id)
            lead = infos.get(s.id)
            slots.append({"slot": s.id, "leader": s.leader, "term": s.term,
                          "leader_last_index": lead["last_index"] if lead else None,
                          "commit_index": lead["commit_index"] if lead else None,
                          "local_last_index": mine["last_index"] if mine else None,
                          "local_applied": mine["applied"] if mine else None})
        resp.media = {"node_id": self.node.node_id, "slots": slots}


class ClusterSyncForce:
    """`POST /cluster/sync/force`: every leader pushes to its lagging replicas now."""

    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        woke = 0
        for pid in list(self.node.view.members):
            try:
                woke += self.node.mesh.request(pid, wire.REPL_SYNC_FORCE, None, timeout=2.0)
            except MeshError:
                pass
        resp.media = {"status": 200, "leaders_woken": woke}


class ClusterNode:
    """`GET /cluster/nodes/{id}`, `DELETE /cluster/nodes/{id}` (remove), `POST .../drain`."""

    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp, node_id: int, draining: bool = False, removed: bool = False):
        view = self.node.view
        table = view.table
        resp.media = {"id": node_id, "online": node_id in view.members,
                      "draining": draining or node_id in view.draining, "removed": removed or node_id in view.removed,
                      "slots_led": len(table.slots_led_by(node_id)) if table else 0,
                      "slot_replicas": len(table.slots_of(node_id)) if table else 0}

    def on_delete(self, req, resp, node_id: int):
        """Remove a node: a live one is drained first; a dead one leaves the replica sets at once."""
        etcd = self.node.etcd
        if node_id in self.node.view.members:
            etcd.put(etcd.key("draining", node_id), "1")
        etcd.put(etcd.key("removed", node_id), json.dumps({"at": time.time()}))
        self.on_get(req, resp, node_id, draining=node_id in self.node.view.members, removed=True)

    def on_post_drain(self, req, resp, node_id: int):
        if node_id not in self.node.view.members:
            raise falcon.HTTPBadRequest(title=f"node {node_id} is not a live member")
        others = [n for n in self.node.view.members if n != node_id]
        if not others:
            raise falcon.HTTPBadRequest(title="cannot drain the only node")
        etcd = self.node.etcd
        etcd.put(etcd.key("draining", node_id), "1")
        self.on_get(req, resp, node_id, draining=True)


class ClusterNodesAdd:
    """`POST /cluster/nodes`: nodes register themselves; this only tells the operator how."""

    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        resp.media = {"status": 200, "msg": "start the node with this cluster's cluster.name, etcd.endpoints and "
                                            "redis.url; it registers itself and receives a fair share of slots"}


class DebugSlotEntries:
    """`GET /cluster/debug/slots/{id}/entries`: this node's applied entries of one slot (for checkers)."""

    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req, resp, slot: int):
        r = self.node.replication.replicas.get(slot)
        if r is None:
            resp.media = {"slot": slot, "node_id": self.node.node_id, "applied": 0, "entries": []}
            return
        upto = r.state.applied
        import base64
        import hashlib

        entries = []
        first = 1
        while first <= upto:
            last = min(upto, first + 4999)
            for idx, term, kind, data in r.entries(first, last):
                if kind == 1:
                    entries.append([idx, term, kind, data[0], data[1], data[2], data[3], data[4], data[5],
                                    base64.b64encode(data[11]).decode()])
                else:
                    digest = hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
                    entries.append([idx, term, kind, digest])
            first = last + 1
        resp.media = {"slot": slot, "node_id": self.node.node_id, "applied": upto, "role": r.role,
                      "entries": entries}


def register(app, node) -> None:
    app.add_route("/cluster/replication", ClusterReplication(node))
    app.add_route("/cluster/data/version", ClusterDataVersion(node))
    app.add_route("/cluster/sync/force", ClusterSyncForce(node))
    nodes = ClusterNode(node)
    app.add_route("/cluster/nodes/{node_id:int}", nodes)
    app.add_route("/cluster/nodes/{node_id:int}/drain", nodes, suffix="drain")
    app.add_route("/cluster/debug/slots/{slot:int}/entries", DebugSlotEntries(node))
    app.add_route("/cluster/backup", ClusterBackup(node))
    app.add_route("/cluster/snapshot", ClusterSnapshot(node))


class ClusterBackup:
    """`POST /cluster/backup {"dir": path}`: this node writes a consistent Parquet copy of its slots there."""

    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        from api.validate import body_of, str_field
        from mesh.storage.backup import export

        body = body_of(req)
        path = str_field(body, "dir", required=True, max_len=1024)
        if not os.path.isabs(path):
            raise falcon.HTTPBadRequest(title="dir must be an absolute path on this node's host")
        node = self.node
        table = node.view.table
        manifest = {"node_id": node.node_id, "cluster": node.cfg["cluster.name"],
                    "slot_table": json.loads(table.to_bytes()) if table else None,
                    "slots": {str(r.slot): [r.last_index, r.last_term] for r in node.replication.replicas.values()}}
        try:
            resp.media = {"status": 200, "manifest": export(node.replication.store, path, manifest)}
        except OSError as exc:
            raise falcon.HTTPBadRequest(title=f"cannot write the backup to {path}: {exc}") from None


class ClusterSnapshot:
    """`POST /cluster/snapshot`: write ``<rootDir>/snapshot/`` so that copying the data directory now is a backup.

    Our users' guide then copies the node's data directory while it runs, and restores
    by stopping the node, copying it back and starting it (``mesh/storage/snapshot.py``).
    """

    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req, resp):
        from mesh.storage import snapshot
        from mesh.storage.log_store import StoreError

        try:
            info = snapshot.take(self.node.replication.store)
        except (OSError, StoreError) as exc:
            raise falcon.HTTPServiceUnavailable(title=f"snapshot failed: {exc}") from None
        resp.media = {"status": 200, "node_id": self.node.node_id, "data_dir": self.node.cfg["rootDir"],
                      "snapshot": info}
