"""Every Prometheus metric a node exports, defined once.

One node is one process, so the default registry is used (no multiprocess mode); the
management port serves it at ``/metrics``. Names start with ``skein_``.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

# ---- node and cluster
node_info = Gauge("skein_node_info", "Static facts about this node", ["node_id", "version"])
node_healthy = Gauge("skein_node_healthy", "1 when /health answers 200")
node_draining = Gauge("skein_node_draining", "1 while the node is draining")
cluster_members = Gauge("skein_cluster_members", "Live members seen in etcd")
is_controller = Gauge("skein_is_controller", "1 on the node holding the controller role")
slots_led = Gauge("skein_slots_led", "Slots this node leads")
slots_replicated = Gauge("skein_slots_replicated", "Slots this node holds a replica of (voter or learner)")
slot_table_version = Gauge("skein_slot_table_version", "Version of the slot table this node has seen")
etcd_up = Gauge("skein_etcd_up", "1 while this node's etcd session is alive")
redis_up = Gauge("skein_redis_up", "1 while Redis answers")
controller_changes = Counter("skein_controller_table_writes_total", "Slot table versions written by this node")

# ---- mesh (node-to-node)
mesh_peers = Gauge("skein_mesh_peers", "Peers this node has sockets to")
mesh_pub_sent = Counter("skein_mesh_pub_sent_total", "Broadcast messages published", ["kind"])
mesh_pub_received = Counter("skein_mesh_pub_received_total", "Broadcast messages received", ["kind"])
mesh_pub_gaps = Counter("skein_mesh_pub_gaps_total", "Broadcast messages found missing by sequence number", ["peer"])
mesh_pub_recovered = Counter("skein_mesh_pub_recovered_total", "Missing broadcast messages fetched again", ["peer"])
mesh_pub_lost = Counter("skein_mesh_pub_lost_total", "Missing broadcast messages the sender no longer had", ["peer"])
mesh_requests = Counter("skein_mesh_requests_total", "Node-to-node requests sent", ["method", "outcome"])
mesh_request_seconds = Histogram("skein_mesh_request_seconds", "Node-to-node request round trip", ["method"],
                                 buckets=LATENCY_BUCKETS)
mesh_handled = Counter("skein_mesh_requests_handled_total", "Node-to-node requests answered", ["method", "outcome"])
mesh_rtt_seconds = Gauge("skein_mesh_ping_rtt_seconds", "Last ping round trip to a peer", ["peer"])

# ---- client gateway
gw_connections = Gauge("skein_gateway_connections", "Open client connections", ["transport", "state"])
gw_connects = Counter("skein_gateway_connects_total", "CONNECTs answered", ["transport", "reason"])
gw_frames_in = Counter("skein_gateway_frames_in_total", "Client frames received", ["type"])
gw_frames_out = Counter("skein_gateway_frames_out_total", "Client frames written", ["transport"])
gw_bytes_in = Counter("skein_gateway_bytes_in_total", "Bytes received from clients", ["transport"])
gw_bytes_out = Counter("skein_gateway_bytes_out_total", "Bytes written to clients", ["transport"])
gw_rejected = Counter("skein_gateway_rejected_total", "Connections or frames refused for bad input", ["reason"])
gw_kicks = Counter("skein_gateway_kicks_total", "Sessions kicked by a newer login or a device quit")
gw_recv_retries = Counter("skein_gateway_recv_retries_total", "RECV frames resent for lack of RECVACK")
gw_recv_retry_exhausted = Counter("skein_gateway_recv_retry_exhausted_total",
                                  "RECV frames given up after messageRetry.maxCount resends")
send_latency = Histogram("skein_send_latency_seconds", "SEND received to SENDACK written", buckets=LATENCY_BUCKETS)
delivery_latency = Histogram("skein_delivery_latency_seconds", "Commit to RECV written (per recipient session)",
                             buckets=LATENCY_BUCKETS)
messages_in = Counter("skein_messages_in_total", "Messages received from clients (SEND)")
messages_out = Counter("skein_messages_out_total", "Messages written to clients (RECV)")

# ---- store
store_commit_seconds = Histogram("skein_store_commit_seconds",
                                 "Duration of one group commit (write-ahead log append and fdatasync)",
                                 buckets=LATENCY_BUCKETS)
store_flush_seconds = Histogram("skein_store_flush_seconds", "Duration of one batch copy from the log into DuckDB",
                                buckets=LATENCY_BUCKETS)
store_commit_entries = Histogram("skein_store_commit_entries", "Log entries per group commit",
                                 buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))

# ---- replication
repl_truncated = Counter("skein_replication_truncated_entries_total",
                         "Unacknowledged log entries discarded because the new leader did not have them")
repl_lag = Gauge("skein_replication_lag_entries", "Entries a replica is behind its leader's commit index",
                 ["slot", "node"])
messages_refused = Counter("skein_messages_refused_total", "Sends refused by the permission check", ["reason"])
messages_deduplicated = Counter("skein_messages_deduplicated_total",
                                "Sends recognised as retries of a known client_msg_no")

# ---- webhooks
webhook_queued = Counter("skein_webhook_queued_total", "Webhook events added to the Redis queue")
webhook_sent = Counter("skein_webhook_sent_total", "Webhook POSTs answered 200", ["event"])
webhook_failures = Counter("skein_webhook_failures_total", "Failed webhook POST attempts (or queueing)", ["event"])
webhook_depth = Gauge("skein_webhook_queue_depth", "Entries in the webhook stream")
