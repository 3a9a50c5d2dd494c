"""Every Prometheus metric a node exports, defined once.

One node is one process, so the default registry is used (no multiprocess mode); the
management port serves it at ``/metrics``. Names start with ``skein_``.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class _Cell:
    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v = 0

    def inc(self, n: float = 1) -> None:
        self.v += n


class _HistCell:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.sum += v


class _Fast:
    """A metric for hot paths: plain integer adds on cells, read only when ``/metrics`` is scraped.

    prometheus-client takes a lock on every ``inc``/``observe`` (a gevent lock once
    patched), which costs more than the work counted on the per-frame and per-message
    paths. Cells are only touched by the hub's greenlets (never by worker threads).
    """

    def __init__(self, name: str, documentation: str, labelnames=()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._cells: dict[tuple[str, ...], Any] = {}
        if not self.labelnames:
            self.labels()  # exported as 0 before the first event, like prometheus-client's own
        REGISTRY.register(self)

    def _new(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: str) -> Any:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = self._new()
        return cell

    def describe(self):
        return [self._family()]


class FastCounter(_Fast):
    def __init__(self, name: str, documentation: str, labelnames=()) -> None:
        super().__init__(name[:-6] if name.endswith("_total") else name, documentation, labelnames)

    def _new(self) -> _Cell:
        return _Cell()

    def inc(self, n: float = 1) -> None:
        self.labels().v += n

    def total(self) -> float:
        """The sum over every label set (cheap: no registry walk)."""
        return float(sum(cell.v for cell in list(self._cells.values())))

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self):
        fam = self._family()
        for values, cell in list(self._cells.items()):
            fam.add_metric(list(values), cell.v)
        yield fam


class FastHistogram(_Fast):
    def __init__(self, name: str, documentation: str, labelnames=(), buckets: tuple[float, ...] = ()) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        super().__init__(name, documentation, labelnames)

    def _new(self) -> _HistCell:
        return _HistCell(self.bounds)

    def observe(self, v: float) -> None:
        self.labels().observe(v)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self):
        fam = self._family()
        for values, cell in list(self._cells.items()):
            cum, buckets = 0, []
            for bound, c in zip(self.bounds + (float("inf"),), cell.counts):
                cum += c
                buckets.append((floatToGoString(bound), cum))
            fam.add_metric(list(values), buckets, cell.sum)
        yield fam


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
loop_lag = FastHistogram("skein_event_loop_lag_seconds", "How much later than asked a 25 ms timer fired",
                         buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
gc_pause = FastHistogram("skein_gc_pause_seconds", "Python garbage collector pauses, by generation", ("generation",),
                         buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0))
controller_changes = Counter("skein_controller_table_writes_total", "Slot table versions written by this node")

# ---- mesh (node-to-node)
mesh_peers = Gauge("skein_mesh_peers", "Peers this node has sockets to")
mesh_pub_sent = FastCounter("skein_mesh_pub_sent_total", "Broadcast messages published", ["kind"])
mesh_pub_received = FastCounter("skein_mesh_pub_received_total", "Broadcast messages received", ["kind"])
mesh_pub_gaps = Counter("skein_mesh_pub_gaps_total", "Broadcast messages found missing by sequence number", ["peer"])
mesh_pub_recovered = Counter("skein_mesh_pub_recovered_total", "Missing broadcast messages fetched again", ["peer"])
mesh_pub_lost = Counter("skein_mesh_pub_lost_total", "Missing broadcast messages the sender no longer had", ["peer"])
mesh_requests = FastCounter("skein_mesh_requests_total", "Node-to-node requests sent", ["method", "outcome"])
mesh_request_seconds = FastHistogram("skein_mesh_request_seconds", "Node-to-node request round trip", ("method",),
                                     buckets=LATENCY_BUCKETS)
mesh_handled = FastCounter("skein_mesh_requests_handled_total", "Node-to-node requests answered", ["method", "outcome"])
mesh_rtt_seconds = Gauge("skein_mesh_ping_rtt_seconds", "Last ping round trip to a peer", ["peer"])

# ---- client gateway
gw_connections = Gauge("skein_gateway_connections", "Open client connections", ["transport", "state"])
gw_connects = Counter("skein_gateway_connects_total", "CONNECTs answered", ["transport", "reason"])
gw_frames_in = FastCounter("skein_gateway_frames_in_total", "Client frames received", ("type",))
gw_frames_out = FastCounter("skein_gateway_frames_out_total", "Client frames written", ("transport",))
gw_bytes_in = FastCounter("skein_gateway_bytes_in_total", "Bytes received from clients", ("transport",))
gw_bytes_out = FastCounter("skein_gateway_bytes_out_total", "Bytes written to clients", ("transport",))
gw_rejected = Counter("skein_gateway_rejected_total", "Connections or frames refused for bad input", ["reason"])
send_rate_limited = Counter("skein_send_rate_limited_total",
                            "Client SENDs refused with reason 22 (RateLimit), by the limit that refused them",
                            ["scope"])
http_rate_limited = Counter("skein_http_rate_limited_total",
                            "HTTP /message/send calls answered 429, by the limit that refused them", ["scope"])
gw_reads_paused = Counter("skein_gateway_reads_paused_total",
                          "Times a connection stopped being read because conn.maxPendingSends of its SENDs were pending")
gw_pending_sends = Gauge("skein_gateway_pending_sends", "Client SENDs waiting for their outcome on this node")
rate_sync = Counter("skein_rate_limit_syncs_total", "Syncs of the per-uid send counts with Redis", ["outcome"])
gw_slow_clients = Counter("skein_gateway_slow_clients_total",
                          "Clients disconnected for not reading: over conn.outboundMaxBytes (bytes), "
                          "conn.outboundMaxDelay (age) or conn.maxPendingFrames (frames)", ["limit"])
gw_kicks = Counter("skein_gateway_kicks_total", "Sessions kicked by a newer login or a device quit")
gw_recv_retries = Counter("skein_gateway_recv_retries_total", "RECV frames resent for lack of RECVACK")
gw_recv_retry_exhausted = Counter("skein_gateway_recv_retry_exhausted_total",
                                  "RECV frames given up after messageRetry.maxCount resends")
send_latency = FastHistogram("skein_send_latency_seconds", "SEND received to SENDACK written", buckets=LATENCY_BUCKETS)
delivery_latency = FastHistogram("skein_delivery_latency_seconds", "Commit to RECV written (per message and node)",
                                 buckets=LATENCY_BUCKETS)
messages_in = FastCounter("skein_messages_in_total", "Messages received from clients (SEND)")
messages_out = FastCounter("skein_messages_out_total", "Messages written to clients (RECV)")

# ---- store
store_commit_seconds = FastHistogram("skein_store_commit_seconds",
                                     "Duration of one group commit (write-ahead log append and fdatasync)",
                                     buckets=LATENCY_BUCKETS)
store_flush_seconds = FastHistogram("skein_store_flush_seconds",
                                    "Duration of one batch copy from the log into DuckDB", buckets=LATENCY_BUCKETS)
store_wal_commits = FastCounter("skein_store_wal_commits_total",
                                "Write-ahead log group commits, by where they ran (loop: the event loop; pool: a worker "
                                "thread; store.inlineSyncMax)", ["thread"])
store_commit_entries = FastHistogram("skein_store_commit_entries", "Log entries per group commit",
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

# ---- HTTP API
api_lenient = Counter("skein_api_lenient_answers_total",
                      "HTTP requests answered 200 (as WuKongIM does) although nothing, or not what was asked, happened",
                      ["route", "reason"])
sendbatch_queued = Counter("skein_sendbatch_queued_total",
                           "Messages accepted by /message/sendbatch (queued in the from_uid's slot log)")
sendbatch_sent = Counter("skein_sendbatch_sent_total", "Queued /message/sendbatch messages sent")
sendbatch_failed = Counter("skein_sendbatch_failed_total",
                           "Queued /message/sendbatch messages refused or not sent (no slot leader)")
