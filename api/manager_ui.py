"""The web manager on the management port: its page and the JSON endpoints only it needs.

* ``GET /`` and ``/static/...``: the page (``api/static/manager/``, plain HTML/JS/CSS, no
  build step). They are open without the manager token: they hold no data, and the page
  asks for the token and sends it on every call.
* ``GET /manager/overview``: the cluster in one answer: ``/cluster/nodes`` of this node
  merged with each member's own numbers (asked over the mesh, ``mgr.stats``: health,
  connections, message totals and rates), plus slot counts and cluster totals.
* ``GET /manager/channel?channel_id=&channel_type=[&login_uid=]``: a channel's info,
  subscribers and lists as its slot leader has them (a person chat needs ``login_uid``;
  without it, type 1 is that uid's own person channel).

The page also calls the regular API (``/connz``, ``/channel/messagesync``, ``/cluster/*``),
which ``create_manager_app`` serves on this port as well.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import falcon
import gevent

from api import cluster_admin, node_stats
from api.static_page import add_page
from mesh.im.channel_rules import KNOWN_TYPES, PERSON, fake_channel_id, is_special

STATS_TIMEOUT = 2.0


def _cluster_nodes(node) -> dict:
    """The `/cluster/nodes` document (pings every member)."""
    out = SimpleNamespace(media=None)
    cluster_admin.ClusterNodes(node).on_get(None, out)
    return out.media


def _all_stats(node, tracker: node_stats.RateTracker, members: list[int]) -> dict[int, dict]:
    stats: dict[int, dict] = {}

    def ask(pid: int) -> None:
        try:
            if pid == node.node_id:
                stats[pid] = node_stats.local_stats(node, tracker)
            else:
                stats[pid] = node.mesh.request(pid, node_stats.MESH_METHOD, None, timeout=STATS_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - one silent node must not break the page
            stats[pid] = {"error": str(exc)}
    gevent.joinall([gevent.spawn(ask, pid) for pid in members], timeout=STATS_TIMEOUT + 0.5)
    return stats


class Overview:
    def __init__(self, node, tracker: node_stats.RateTracker) -> None:
        self.node = node
        self.tracker = tracker

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        node = self.node
        doc = _cluster_nodes(node)
        stats = _all_stats(node, self.tracker, [n["id"] for n in doc["nodes"]])
        nodes = []
        for n in doc["nodes"]:
            st = stats.get(n["id"]) or {"error": "no answer"}
            if "error" in st:
                health = "unreachable"
            else:
                health = "healthy" if st["healthy"] else "unhealthy"
            nodes.append({**n, "controller": n["id"] == doc["leader"], "health": health,
                          "health_reasons": st.get("reasons", []), "stats_error": st.get("error"),
                          **{k: st.get(k) for k in ("connections", "users", "messages_in_total", "messages_out_total",
                                                    "in_rate", "out_rate", "uptime_s", "mem_bytes", "version")}})
        table = node.view.table
        live = node.view.live()
        slots = table.slots if table else []
        with_leader = sum(1 for s in slots if s.leader in live)
        healthy = all(n["health"] == "healthy" for n in nodes) and not doc["offline"]
        status = "healthy" if healthy and slots and with_leader == len(slots) else (
            "unavailable" if not with_leader else "degraded")
        known = [n for n in nodes if n["health"] != "unreachable"]
        resp.media = {
            "node_id": node.node_id, "controller": doc["leader"], "status": status,
            "slot_table_version": table.version if table else 0,
            "slots": {"total": len(slots), "with_live_leader": with_leader},
            "nodes": nodes, "offline": doc["offline"],
            "totals": {"connections": sum(n["connections"] or 0 for n in known),
                       "users": sum(n["users"] or 0 for n in known),
                       "in_rate": round(sum(n["in_rate"] or 0 for n in known), 2),
                       "out_rate": round(sum(n["out_rate"] or 0 for n in known), 2)},
            "generated_at": cluster_admin.iso(time.time()),
        }


class ChannelLookup:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        cid = (req.get_param("channel_id") or "").strip()
        if not cid:
            raise falcon.HTTPBadRequest(title="channel_id is required")
        if is_special(cid):
            raise falcon.HTTPBadRequest(title="channel_id must not contain '@', '#' or '&'")
        ctype = req.get_param_as_int("channel_type", default=2)
        if ctype not in KNOWN_TYPES:
            raise falcon.HTTPBadRequest(title=f"channel_type {ctype} is not a channel type (1-12)")
        login_uid = (req.get_param("login_uid") or "").strip()
        sid = fake_channel_id(login_uid, cid) if ctype == PERSON and login_uid else cid
        node = self.node
        got = node.call_or_503(node.channels.get, sid, ctype)
        slot = node.router.slot_of(sid)
        table = node.view.table
        leader = next((s.leader for s in table.slots if s.id == slot), None) if table else None
        out = {"channel_id": cid, "channel_type": ctype, "storage_id": sid, "slot": slot, "leader": leader,
               "found": got is not None and (got["exists"] or got["last_seq"] > 0)}
        if got is not None:
            out.update({"exists": got["exists"], "info": got["info"], "last_seq": got["last_seq"],
                        "subscriber_count": len(got["subscribers"]), "subscribers": got["subscribers"][:1000],
                        "deny": got["deny"][:1000], "allow": got["allow"][:1000]})
        resp.media = out


def register(app: falcon.App, node) -> None:
    tracker = node_stats.install(node)
    add_page(app, "manager")
    app.add_route("/manager/overview", Overview(node, tracker))
    app.add_route("/manager/channel", ChannelLookup(node))
