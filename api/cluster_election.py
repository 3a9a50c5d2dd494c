"""`POST /cluster/election` (our users' guide) and WuKongIM's `POST /cluster/slots/{id}/election`.

Without a body (or with ``{}``) the controller resigns its etcd election and another
live node takes the role. With ``{"slot": N}`` (or on the WuKongIM path) the slot's
leadership moves off the node that was asked, when it leads the slot: the controller
writes the slot table with another in-sync voter as leader at term + 1, the same kind
of change a drain or a stuck leader makes (when that would leave the leader counts
uneven, one of the new leader's slots comes to this node in the same change:
``swapped``, so balancing does not hand the slot back). Both answer once the change is visible in
this node's copy of the cluster state (at most 5 s), or 503 if it did not happen.
"""
from __future__ import annotations

import time

import falcon
import gevent

from mesh.net import wire

WAIT = 5.0


class ClusterElection:
    def __init__(self, node) -> None:
        self.node = node

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.get_media(default_when_empty=None)
        if body is None or body == {}:
            self._controller(resp)
            return
        slot = body.get("slot", body.get("slot_id")) if isinstance(body, dict) else None
        if not isinstance(slot, int) or isinstance(slot, bool):
            raise falcon.HTTPBadRequest(title="slot (integer slot id) is expected, or no body for a controller "
                                              "election")
        self._slot(resp, slot)

    def on_post_slot(self, req: falcon.Request, resp: falcon.Response, slot: int) -> None:
        self._slot(resp, slot)

    def _controller(self, resp: falcon.Response) -> None:
        node = self.node
        before = node.view.controller
        deadline = time.time() + WAIT
        done = None
        while not done and time.time() < deadline:
            done = node.request_controller(wire.RESIGN_CONTROLLER, None)
            if not done:
                gevent.sleep(0.2)
        if not done:
            raise falcon.HTTPServiceUnavailable(title="the controller did not resign; retry")
        while time.time() < deadline and node.view.controller in (None, before):
            gevent.sleep(0.05)
        after = node.view.controller
        resp.media = {"status": 200, "type": "controller", "previous_leader": before, "leader": after,
                      "moved": after not in (None, before)}

    def _slot(self, resp: falcon.Response, slot: int) -> None:
        node = self.node
        table = node.view.table
        if table is None or not 0 <= slot < len(table.slots):
            raise falcon.HTTPBadRequest(title=f"no slot {slot}")
        current = table.slots[slot]
        if current.leader != node.node_id:
            resp.media = {"status": 200, "type": "slot", "slot": slot, "moved": False, "leader": current.leader,
                          "term": current.term, "reason": f"node {node.node_id} does not lead slot {slot}"}
            return
        deadline = time.time() + WAIT
        answer: dict = {}
        while time.time() < deadline:
            answer = node.request_controller(wire.ELECT_SLOT, [slot, node.node_id]) or \
                {"moved": False, "reason": "no controller answered"}
            if answer.get("moved"):
                break
            gevent.sleep(0.2)
        if not answer.get("moved"):
            raise falcon.HTTPServiceUnavailable(title=f"slot {slot} did not move: {answer.get('reason')}")
        while time.time() < deadline:
            s = node.view.table.slots[slot]
            if s.term >= answer["term"]:
                break
            gevent.sleep(0.05)
        s = node.view.table.slots[slot]
        resp.media = {"status": 200, "type": "slot", "slot": slot, "moved": True, "previous_leader": node.node_id,
                      "leader": s.leader, "term": s.term, "swapped": answer.get("swapped", [])}


def register(app, node) -> None:
    election = ClusterElection(node)
    app.add_route("/cluster/election", election)
    app.add_route("/cluster/slots/{slot:int}/election", election, suffix="slot")
