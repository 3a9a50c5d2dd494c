"""`GET /health` and `GET /readyz`: 200 only while the node is ready to serve.

Ready means: joined the cluster, etcd session alive, Redis reachable, at least
``cluster.minimumNodes`` members alive, not draining, and every slot replica this node
must hold caught up. Otherwise 503 with the reasons, so a load balancer takes the node
out (and puts it back when it recovers).
"""
from __future__ import annotations

import falcon


class Health:
    def __init__(self, node) -> None:
        self.node = node

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok, reasons = self.node.health()
        if ok:
            resp.media = {"status": "ok"}
        else:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "error", "message": "; ".join(reasons), "reasons": reasons}

    on_head = on_get
