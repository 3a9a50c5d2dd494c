"""WuKongIM v2.2.5's cluster shapes, which its web manager reads (gaps §8).

* ``node_configs(node)``: WuKongIM's ``NodeConfig`` per member (live members from
  etcd, offline ones from the slot table), with its int flags and its habit of
  omitting zero-valued optional fields; ``GET /cluster/nodes`` carries them as
  ``total`` and ``data`` next to the guide's ``leader`` and ``nodes``.
* ``GET /cluster/simpleNodes``: the same ``{total, data}`` without the fields only a
  live node knows (uptime, app_version, config_version, term).
* ``GET /cluster/node``: the bare object of the node answering.
* ``GET /cluster/allslot``: ``{total, data: [SlotResp]}`` of every slot, sorted by id,
  with the leader's last log index (asked from the slot leaders over the mesh).
* ``GET /cluster/raft/status`` (the configuration guide's troubleshooting call): per
  slot the term, leader, last, commit and applied index, and each replica's matched
  index and lag behind the commit index.
"""
from __future__ import annotations

import calendar
import time

import falcon
import gevent

from mesh.net import wire
from mesh.net.transport import MeshError

JOINED = 3
JOINED_TEXT = "已加入"
SLOT_STATUS_TEXT = {0: "正常", 1: "候选中", 2: "领导者转移中"}


def go_duration(seconds: float) -> str:
    """An uptime as WuKongIM prints it: ``1d2h3m4s``, ``3m4s``, ``4s``."""
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    out = (f"{d}d" if d else "") + (f"{h}h" if d or h else "") + (f"{m}m" if d or h or m else "")
    return f"{out}{s}s"


def _started(info: dict) -> float | None:
    try:
        return calendar.timegm(time.strptime(info.get("started_at") or "", "%Y-%m-%dT%H:%M:%SZ"))
    except (ValueError, TypeError):
        return None


def _put(out: dict, key: str, value) -> None:
    """WuKongIM's ``omitempty``: zero, empty and None are left out."""
    if value:
        out[key] = value


def leaders_info(node) -> dict[int, dict]:
    """Replica info of every slot, asked from the nodes that lead them."""
    out: dict[int, dict] = {}

    def ask(pid: int) -> None:
        try:
            for info in node.mesh.request(pid, wire.REPL_STATUS, None, timeout=2.0):
                out[info["slot"]] = info
        except MeshError:
            pass
    gevent.joinall([gevent.spawn(ask, pid) for pid in node.view.members], timeout=3)
    return out


def node_configs(node, *, simple: bool = False) -> list[dict]:
    """WuKongIM's NodeConfig of every node this one knows of, sorted by id."""
    view = node.view
    members = dict(view.members)
    table = view.table
    leaders = table.leader_counts(members) if table else {}
    replicas = table.member_counts() if table else {}
    known = set(members) | {m for s in (table.slots if table else []) for m in s.members()}
    out = []
    for pid in sorted(known):
        info = members.get(pid)
        c: dict = {"id": pid}
        _put(c, "is_leader", 1 if view.controller == pid else 0)
        c["role"] = 0
        c["cluster_addr"] = (info or {}).get("serverAddr") or ""
        _put(c, "api_server_addr", (info or {}).get("apiUrl") or "")
        _put(c, "online", 1 if info is not None else 0)
        c["allow_vote"] = 0 if pid in view.draining or pid in view.removed else 1
        _put(c, "slot_count", replicas.get(pid, 0))
        _put(c, "slot_leader_count", leaders.get(pid, 0))
        if info is not None and not simple:
            _put(c, "term", table.version if table else 0)
            started = node.started_at if pid == node.node_id else _started(info)
            c["uptime"] = go_duration(time.time() - started) if started else ""
            c["app_version"] = info.get("version") or ""
            c["config_version"] = table.version if table else 0
        c["status"] = JOINED
        c["status_format"] = JOINED_TEXT
        out.append(c)
    return out


class SimpleNodes:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = node_configs(self.node, simple=True)
        resp.media = {"total": len(data), "data": data}


class ThisNode:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        me = [c for c in node_configs(self.node) if c["id"] == self.node.node_id]
        if not me:  # not registered (yet): the bare minimum
            me = [{"id": self.node.node_id, "role": 0, "cluster_addr": self.node.cfg["cluster.serverAddr"],
                   "allow_vote": 1}]
        resp.media = me[0]


class AllSlots:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = self.node.view
        table = view.table
        infos = leaders_info(self.node)
        data = []
        for s in sorted(table.slots if table else [], key=lambda s: s.id):
            info = infos.get(s.id)
            live = s.leader in view.members
            status = 0 if live and info and info.get("leader") == s.leader else 1
            data.append({"id": s.id, "leader_id": s.leader, "term": s.term, "replicas": list(s.members()),
                         "channel_count": 0, "log_index": int(info["last_index"]) if (info and live) else 0,
                         "status": status, "status_format": SLOT_STATUS_TEXT[status]})
        resp.media = {"total": len(data), "data": data}


class RaftStatus:
    """``GET /cluster/raft/status``: per slot the term, leader, commit and applied index, and
    each replica's matched index and lag (the leaders' ``repl.status``, asked over the mesh)."""

    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = self.node.view
        table = view.table
        infos = leaders_info(self.node)
        slots = []
        for s in sorted(table.slots if table else [], key=lambda s: s.id):
            info = infos.get(s.id)
            commit = int(info["commit_index"]) if info else None
            replicas = []
            for m in s.members():
                if info is None:
                    matched = None
                elif m == info["leader"]:
                    matched = int(info["last_index"])
                else:
                    matched = int(info["match"].get(m, info["match"].get(str(m), 0)))
                lag = max(commit - matched, 0) if (commit is not None and matched is not None) else None
                replicas.append({"node_id": m, "role": "learner" if m in s.learners else "voter",
                                 "leader": m == s.leader, "online": m in view.members, "matched_index": matched,
                                 "lag": lag})
            slots.append({"slot": s.id, "term": s.term, "leader": s.leader,
                          "leader_online": s.leader in view.members, "ready": bool(info and info["ready"]),
                          "last_index": int(info["last_index"]) if info else None, "commit_index": commit,
                          "applied_index": int(info["applied"]) if info else None, "replicas": replicas})
        resp.media = {"node_id": self.node.node_id, "controller": view.controller, "total": len(slots),
                      "slots": slots}


def register(app: falcon.App, node) -> None:
    app.add_route("/cluster/simpleNodes", SimpleNodes(node))
    app.add_route("/cluster/node", ThisNode(node))
    app.add_route("/cluster/allslot", AllSlots(node))
    app.add_route("/cluster/raft/status", RaftStatus(node))
