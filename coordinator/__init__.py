"""The cluster's shared truth in etcd (and Redis for presence), as one node sees it.

``etcd_client`` and ``redis_client`` are the clients; ``cluster_view`` the watched view
(members, controller, slot table, reports); ``membership`` this node's lease;
``controller`` the election and the slot-table writer; ``slot_table`` the pure slot
logic (``plan()``); ``presence`` where each uid is connected.
"""
