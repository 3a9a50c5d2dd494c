"""Node configuration: the schema of every key, YAML loading and `WK_*` overrides.

This module owns the list of configuration keys (name, type, default, doc), reading a
YAML file given with ``--config``, overriding any key from the environment
(``cluster.nodeId`` -> ``WK_CLUSTER_NODEID``), validating values and rendering the key
reference in ``docs/config.md``.  It does no I/O beyond reading the file and
``os.environ``, so it is unit-tested directly.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mesh.base import config_compat
from mesh.base.config_compat import parse_log_level


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config key {key!r} ({env_name(key)}): {problem}")


def env_name(key: str) -> str:
    """The environment variable that overrides ``key``: dots to underscores, upper case."""
    return "WK_" + key.replace(".", "_").upper()


# --------------------------------------------------------------------------- parsers

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``3``, ``2.5``, ``"500ms"``, ``"60s"``, ``"3m"`` or ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5, '500ms', '60s' or '3m'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 5, '500ms', '60s' or '3m'")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"{value!r} is not an integer")
    return int(text)


def parse_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return "" if value is None else str(value)


def parse_list(value: Any) -> list[str]:
    """A list from YAML, or from an env string separated by commas or spaces."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p for p in re.split(r"[\s,]+", str(value).strip()) if p]


def split_hostport(value: str) -> tuple[str, int]:
    """``"0.0.0.0:5001"``, ``"tcp://h:p"``, ``"ws://h:p/path"`` -> (host, port)."""
    text = value.strip()
    text = re.sub(r"^[a-z]+://", "", text)
    text = text.split("/", 1)[0]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r} has no port (expected host:port)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r} has no valid port (expected host:port)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} out of range")
    return host or "0.0.0.0", port


def parse_addr(value: Any) -> str:
    text = parse_str(value).strip()
    if text:
        split_hostport(text)
    return text


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Key:
    path: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    required: bool = False
    secret: bool = False
    check: Callable[[Any], str | None] | None = None

    @property
    def type_name(self) -> str:
        return {
            parse_duration: "duration",
            parse_bool: "bool",
            parse_int: "int",
            parse_str: "string",
            parse_list: "list",
            parse_addr: "host:port",
            parse_log_level: "level",
        }.get(self.parse, "value")


def _range(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"

    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"

    return check


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be greater than 0, got {v}"


KEYS: tuple[Key, ...] = (
    Key("mode", parse_str, "release", "Run mode: `release`, `debug` (verbose logs) or `test`.",
        check=_one_of("release", "debug", "test")),
    Key("rootDir", parse_str, "./data/node", "Data directory of this node (DuckDB store, logs)."),
    Key("schedBatch", parse_bool, True,
        "Run the node's threads under Linux's `SCHED_BATCH` policy: a thread that wakes waits for the running "
        "one to block or use up its slice instead of preempting it, so the node's many hand-offs (event loop, "
        "ZeroMQ's I/O thread, storage workers) make fewer context switches; an idle CPU still runs it at once. "
        "When every CPU is busy, tails get longer (a woken thread waits out the running task's slice). "
        "`false`: the default policy."),
    Key("httpAddr", parse_addr, "0.0.0.0:5001", "Listen address of the WuKongIM-compatible HTTP API."),
    Key("tcpAddr", parse_addr, "0.0.0.0:5100", "Listen address for binary WKProto clients over TCP."),
    Key("wsAddr", parse_addr, "ws://0.0.0.0:5200", "Listen address for WebSocket clients (any path)."),
    Key("wssAddr", parse_addr, "",
        "Listen address for WebSocket clients over TLS (`wss://0.0.0.0:5210`; empty: off). Needs "
        "`wssConfig.certFile` and `wssConfig.keyFile`; for deployments without a TLS-terminating balancer."),
    Key("wssConfig.certFile", parse_str, "", "PEM certificate (chain) of the `wssAddr` listener."),
    Key("wssConfig.keyFile", parse_str, "", "PEM private key of the `wssAddr` listener (unencrypted)."),
    Key("proxyProtocol.tcp", parse_bool, False,
        "The TCP listener expects a PROXY protocol header (v1 or v2, haproxy `send-proxy` / `send-proxy-v2`) "
        "on every connection and takes the client's address from it; a connection without one is refused."),
    Key("proxyProtocol.ws", parse_bool, False,
        "The same for the WebSocket listeners (`wsAddr` and `wssAddr`; before the TLS handshake)."),
    Key("proxyProtocol.timeout", parse_duration, 5.0,
        "A connection whose PROXY header is not complete within this time is closed.", check=_positive),
    Key("manager.on", parse_bool, True, "Serve the management port (metrics, web manager)."),
    Key("manager.addr", parse_addr, "0.0.0.0:5300", "Listen address of the management port (`/metrics`, web manager)."),
    Key("demo.on", parse_bool, True, "Serve the demo chat page."),
    Key("demo.addr", parse_addr, "0.0.0.0:5172", "Listen address of the demo chat page."),
    Key("external.ip", parse_str, "", "Address clients use to reach this node; defaults to 127.0.0.1."),
    Key("external.tcpAddr", parse_str, "", "TCP address handed to clients by `/route` (default `external.ip`:tcp port)."),
    Key("external.wsAddr", parse_str, "", "WebSocket URL handed to clients by `/route` (default `ws://external.ip:ws port`)."),
    Key("external.wssAddr", parse_str, "",
        "Secure WebSocket URL handed to clients by `/route` (default `wss://external.ip:wssAddr port` "
        "when `wssAddr` is set, else none)."),
    Key("external.apiUrl", parse_str, "", "URL of this node's HTTP API as other nodes and tools see it."),
    Key("intranet.tcpAddr", parse_str, "", "TCP address for `/route?intranet=1` (default: external.tcpAddr)."),
    Key("cluster.nodeId", parse_int, None,
        "Unique id of this node (1-1022; it is part of every message id; 1023 would trip a JS SDK 1.0.4 bug).",
        required=True, check=_range(1, 1022)),
    Key("cluster.name", parse_str, "skein", "Cluster name: the etcd key prefix `/skein/<name>/` shared by all nodes."),
    Key("cluster.serverAddr", parse_addr, "127.0.0.1:11110",
        "Node-to-node address (ZeroMQ ROUTER); peers connect to it as given, so use a routable host."),
    Key("cluster.pubAddr", parse_addr, "", "Node-to-node broadcast address (ZeroMQ PUB); default: serverAddr port + 1."),
    Key("cluster.slotCount", parse_int, 64,
        "Number of slots keys hash to (`crc32(key) % slotCount`). Fixed for the cluster's life.",
        check=_range(1, 4096)),
    Key("cluster.replicaCount", parse_int, 3, "Replicas per slot (all nodes when fewer are alive).", check=_range(1, 9)),
    Key("cluster.minimumNodes", parse_int, 1, "`/health` is 503 while fewer members than this are alive.", check=_range(1, 1024)),
    Key("cluster.leaseTTL", parse_int, 3, "etcd lease TTL in seconds: a dead node leaves every view within this time.",
        check=_range(2, 60)),
    Key("cluster.heartbeatInterval", parse_duration, 1.0,
        "How often the node refreshes its etcd lease and publishes a mesh heartbeat.", check=_positive),
    Key("cluster.requestTimeout", parse_duration, 5.0, "Timeout of a node-to-node request.", check=_positive),
    Key("cluster.pingTimeout", parse_duration, 1.0, "Timeout of a node-to-node ping (`/cluster/nodes`).", check=_positive),
    Key("cluster.pubHwm", parse_int, 100000, "ZeroMQ high-water mark of the broadcast sockets (messages).",
        check=_range(0, 10_000_000)),
    Key("cluster.pubReplayBuffer", parse_int, 20000,
        "Broadcast messages each node keeps so peers can fetch what they missed.", check=_range(100, 10_000_000)),
    Key("cluster.drainDelay", parse_duration, 2.0,
        "On SIGTERM or drain, how long `/health` reports 503 before connections are closed."),
    Key("cluster.curvePublicKey", parse_str, "",
        "CURVE public key (Z85) shared by the cluster's nodes; with the secret key it encrypts and authenticates "
        "node-to-node traffic (generate with `python -m mesh.net.curve`)."),
    Key("cluster.curveSecretKey", parse_str, "", "CURVE secret key (Z85) shared by the cluster's nodes.", secret=True),
    Key("etcd.endpoints", parse_list, ["127.0.0.1:2379"], "etcd client endpoints (host:port), comma separated in the env."),
    Key("etcd.timeout", parse_duration, 3.0, "Timeout of one etcd call.", check=_positive),
    Key("etcd.username", parse_str, "", "etcd user (with etcd.password)."),
    Key("etcd.password", parse_str, "", "etcd password.", secret=True),
    Key("etcd.caFile", parse_str, "", "CA file for etcd TLS (enables TLS)."),
    Key("etcd.certFile", parse_str, "", "Client certificate for etcd TLS."),
    Key("etcd.keyFile", parse_str, "", "Client key for etcd TLS."),
    Key("redis.url", parse_str, "redis://127.0.0.1:6379/0",
        "Redis URL (`redis://[:password@]host:port/db`, `rediss://` for TLS).", secret=True),
    Key("redis.password", parse_str, "", "Redis password (overrides one in the URL).", secret=True),
    Key("redis.caFile", parse_str, "", "CA file for Redis TLS (`rediss://`)."),
    Key("redis.timeout", parse_duration, 2.0, "Timeout of one Redis call.", check=_positive),
    Key("tokenAuthOn", parse_bool, True,
        "Require the token registered by `POST /user/token` on CONNECT (device level from it). false, WuKongIM's "
        "default: any token, every connection at slave level (no kicks between devices, `msg.offline` for every "
        "recipient); a banned uid is still refused (reason 19)."),
    Key("managerToken", parse_str, "", "When set, every HTTP API and manager request needs it in the `token` header.",
        secret=True),
    Key("disableEncryption", parse_bool, False, "Do not negotiate session encryption (for clients that do not encrypt)."),
    Key("disableJSONRPC", parse_bool, False, "Refuse the JSON-RPC dialect on the client ports."),
    Key("disableCMDMessageSync", parse_bool, False,
        "Make /message/sync answer [] and /message/syncack do nothing (CMD messages are still stored, "
        "delivered and their read positions moved by RECVACK), as in WuKongIM."),
    Key("customerService.visitorsSuffix", parse_str, "___vstr",
        "Uids ending with this suffix are visitors: they connect without a token check even with tokenAuthOn."),
    Key("agent.webhook.httpAddr", parse_str, "",
        "When set, msg.notify of agent chats (type 11) goes to this URL instead of webhook.httpAddr "
        "(which must still be set for msg.notify to be queued), as in WuKongIM."),
    Key("whitelistOffOfPerson", parse_bool, True,
        "Ignore users' allow lists for person chats (WuKongIM's default); false enforces them (reason 13)."),
    Key("conn.authTimeout", parse_duration, 4.0, "A new connection must send CONNECT within this time."),
    Key("conn.idleTimeout", parse_duration, 180.0, "An authenticated connection that sends nothing for this long is closed."),
    Key("conn.partialFrameTimeout", parse_duration, 30.0,
        "An authenticated connection that leaves half a frame unfinished this long is closed."),
    Key("conn.maxPendingFrames", parse_int, 10000,
        "Frames queued for a client that does not read before it is closed as slow.", check=_range(10, 10_000_000)),
    Key("conn.outboundMaxBytes", parse_int, 4 * 1024 * 1024,
        "Bytes queued for a client that does not read fast enough before it gets a DISCONNECT and is closed.",
        check=_range(1024, 1 << 34)),
    Key("conn.outboundMaxDelay", parse_duration, 10.0,
        "A client whose oldest queued frame waits longer than this gets a DISCONNECT and is closed "
        "(it catches up by sync when it reconnects)."),
    Key("conn.maxConnections", parse_int, 100000, "Client connections one node accepts (TCP plus WebSocket).",
        check=_range(1, 10_000_000)),
    Key("conn.maxConnectionsPerIp", parse_int, 5000,
        "Client connections one node accepts from one IP address (0: no limit); the next one is closed at once. "
        "Behind a load balancer that hides client addresses, list it in `conn.ipLimitExempt`.", check=_range(0, 10_000_000)),
    Key("conn.ipLimitExempt", parse_list, [],
        "Client addresses `conn.maxConnectionsPerIp` does not apply to (a load balancer that hides client addresses)."),
    Key("conn.maxPendingSends", parse_int, 100,
        "SENDs of one connection waiting for their SENDACK before the node stops reading that connection "
        "(until half are answered).", check=_range(2, 1_000_000)),
    Key("limits.nodePendingSends", parse_int, 20000,
        "Client SENDs pending on the whole node above which every connection waits for its previous SEND before "
        "its next one is read.", check=_range(1, 100_000_000)),
    Key("limits.connSendRate", parse_int, 50,
        "SENDs per second one connection may make (token bucket, 0: no limit); over it, SENDACK 22 (RateLimit).",
        check=_range(0, 10_000_000)),
    Key("limits.connSendBurst", parse_int, 200, "Burst of the per-connection send limit (bucket size).",
        check=_range(1, 10_000_000)),
    Key("limits.uidSendRate", parse_int, 100,
        "SENDs per second one uid may make over all its connections and nodes (counted in Redis; per node while "
        "Redis is down; 0: no limit).", check=_range(0, 10_000_000)),
    Key("limits.uidSendBurst", parse_int, 400, "Burst of the per-uid send limit.", check=_range(1, 10_000_000)),
    Key("limits.graceSeconds", parse_duration, 5.0,
        "A client still refused for its rate this long (without a pause as long) gets DISCONNECT 22 and is closed.",
        check=_positive),
    Key("limits.httpFromUidRate", parse_int, 100,
        "HTTP `/message/send` calls per second for one `from_uid` (system uid exempt; 0: no limit); over it, 429.",
        check=_range(0, 10_000_000)),
    Key("limits.httpFromUidBurst", parse_int, 400, "Burst of the per-`from_uid` HTTP send limit.",
        check=_range(1, 10_000_000)),
    Key("limits.httpTokenRate", parse_int, 2000,
        "HTTP `/message/send` calls per second per API token (the `token` header; the manager token is exempt; "
        "0: no limit); over it, 429.", check=_range(0, 10_000_000)),
    Key("limits.httpTokenBurst", parse_int, 4000, "Burst of the per-token HTTP send limit.",
        check=_range(1, 10_000_000)),
    Key("limits.syncInterval", parse_duration, 0.25,
        "How often each node adds its per-uid send counts to Redis and charges what other nodes counted.",
        check=_positive),
    Key("health.maxLoopLag", parse_duration, 2.0,
        "`/health` answers 503 (overloaded) while the event loop ran on average this late over the last 5 s.",
        check=_positive),
    Key("messageRetry.interval", parse_duration, 60.0, "A RECV not acknowledged is sent again after this long."),
    Key("messageRetry.maxCount", parse_int, 5, "How many times an unacknowledged RECV is resent.", check=_range(0, 1000)),
    Key("messageRetry.scanInterval", parse_duration, 5.0, "How often the resend queue is scanned."),
    Key("store.commitInterval", parse_duration, 0.002, "Group-commit window of the store (many entries per commit)."),
    Key("store.inlineSyncMax", parse_duration, 0.005,
        "The event loop writes and fdatasyncs the write-ahead log itself (no thread hand-off) while the commits "
        "it wrote took this long or less on average; past that, or after one commit over 10 times this (a "
        "stalling disk), the next 5 s of commits go to worker threads; `0`: always worker threads."),
    Key("store.commitMaxEntries", parse_int, 2000, "Most entries in one group commit.", check=_range(1, 1_000_000)),
    Key("store.flushInterval", parse_duration, 1.0,
        "How often logged writes are copied into DuckDB in one batch (reads wait for the copy)."),
    Key("store.fsync", parse_bool, True,
        "fdatasync the write-ahead log before acknowledging writes (false only for throwaway test clusters)."),
    Key("store.threads", parse_int, 4, "Threadpool size for DuckDB calls.", check=_range(1, 64)),
    Key("store.memoryLimit", parse_str, "512MB", "DuckDB memory limit."),
    Key("webhook.httpAddr", parse_str, "", "Webhook receiver URL; events are POSTed to `<url>?event=<name>`."),
    Key("webhook.focusEvents", parse_list, [], "Only these events are sent (empty: all)."),
    Key("webhook.msgNotifyEventPushInterval", parse_duration, 0.5, "msg.notify batching interval."),
    Key("webhook.msgNotifyEventCountPerPush", parse_int, 100, "Most messages in one msg.notify POST.", check=_range(1, 10000)),
    Key("webhook.msgNotifyEventRetryMaxCount", parse_int, 5, "Attempts per webhook POST before it is dead-lettered.",
        check=_range(1, 1000)),
    Key("webhook.timeout", parse_duration, 30.0, "HTTP timeout of one webhook POST."),
    Key("logger.level", parse_log_level, "INFO",
        "Log level: DEBUG, INFO, WARNING, ERROR, or WuKongIM's int (0 default, 1 debug, 2 info, 3 warn, 4 error)."),
    Key("logger.dir", parse_str, "", "Also write logs to `<dir>/skein-<nodeId>.log` (empty: stderr only)."),
)

KEYS_BY_PATH: dict[str, Key] = {k.path: k for k in KEYS}

# WuKongIM's keys (aliases of ours, and the ones accepted and ignored): mesh.base.config_compat.


class Config:
    """Validated configuration values, read with ``cfg["cluster.nodeId"]``."""

    def __init__(self, values: Mapping[str, Any], source: str = "", unknown: Iterable[str] = (),
                 ignored: Iterable[tuple[str, str]] = ()) -> None:
        self._values = dict(values)
        self.source = source
        self.unknown = sorted(unknown)
        self.ignored = sorted(ignored)  # (WuKongIM key or WK_ variable, why): accepted and not used

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def redacted(self) -> dict[str, Any]:
        """Values with every secret replaced, for logs and `/varz`."""
        out = {}
        for path, value in self._values.items():
            key = KEYS_BY_PATH.get(path)
            out[path] = "***" if key and key.secret and value else value
        out["redis.url"] = redact_url(self._values.get("redis.url", ""))
        return out

    # ---- derived values used across the node
    @property
    def node_id(self) -> int:
        return self._values["cluster.nodeId"]

    def hostport(self, key: str) -> tuple[str, int]:
        return split_hostport(self._values[key])


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]*):([^@/]*)@", r"//\1:***@", url or "")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k is True or k is False:  # YAML 1.1 reads a bare `on:`/`off:` key as a boolean
            k = "on" if k else "off"
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and path not in KEYS_BY_PATH:
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def load(path: str | None = None, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (YAML, optional), apply ``WK_*`` from ``env`` and validate.

    Raises ConfigError naming the first bad key.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            raise ConfigError("--config", f"file {path!r} not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{path!r} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError("--config", f"{path!r} must hold a mapping of keys")
        raw = _flatten(data)
    try:
        compat = config_compat.translate(raw, env, set(KEYS_BY_PATH))
    except config_compat.AliasError as exc:
        raise ConfigError(exc.key, str(exc)) from None
    raw, env = compat.raw, compat.env
    unknown = [k for k in raw if k not in KEYS_BY_PATH]
    if overrides:
        raw.update(overrides)

    values: dict[str, Any] = {}
    for key in KEYS:
        name = env_name(key.path)
        if name in env:
            value, given = env[name], True
        elif key.path in raw and raw[key.path] is not None:
            value, given = raw[key.path], True
        else:
            value, given = key.default, False
        if not given and key.required:
            raise ConfigError(key.path, "is required")
        if given:
            try:
                value = key.parse(value)
            except ValueError as exc:
                raise ConfigError(key.path, str(exc)) from None
        if value is not None and key.check is not None:
            problem = key.check(value)
            if problem:
                raise ConfigError(key.path, problem)
        values[key.path] = value
    _derive(values)
    return Config(values, source=path or "", unknown=unknown, ignored=compat.ignored)


def _derive(v: dict[str, Any]) -> None:
    """Fill defaults that depend on other keys, and cross-key checks."""
    if not v["cluster.pubAddr"]:
        host, port = split_hostport(v["cluster.serverAddr"])
        if port == 0:
            v["cluster.pubAddr"] = f"{host}:0"
        else:
            v["cluster.pubAddr"] = f"{host}:{port + 1}"
    ip = v["external.ip"] or "127.0.0.1"
    v["external.ip"] = ip
    _, tcp_port = split_hostport(v["tcpAddr"])
    _, ws_port = split_hostport(v["wsAddr"])
    _, api_port = split_hostport(v["httpAddr"])
    if not v["external.tcpAddr"]:
        v["external.tcpAddr"] = f"{ip}:{tcp_port}"
    if not v["external.wsAddr"]:
        v["external.wsAddr"] = f"ws://{ip}:{ws_port}"
    if not v["external.apiUrl"]:
        v["external.apiUrl"] = f"http://{ip}:{api_port}"
    if not v["intranet.tcpAddr"]:
        v["intranet.tcpAddr"] = v["external.tcpAddr"]
    _derive_wss(v, ip)
    if not v["etcd.endpoints"]:
        raise ConfigError("etcd.endpoints", "needs at least one host:port")
    for ep in v["etcd.endpoints"]:
        try:
            split_hostport(ep)
        except ValueError as exc:
            raise ConfigError("etcd.endpoints", str(exc)) from None
    if bool(v["etcd.username"]) != bool(v["etcd.password"]):
        raise ConfigError("etcd.password", "etcd.username and etcd.password must be given together")
    pub, sec = v["cluster.curvePublicKey"], v["cluster.curveSecretKey"]
    if bool(pub) != bool(sec):
        raise ConfigError("cluster.curveSecretKey", "cluster.curvePublicKey and cluster.curveSecretKey go together")
    for name, key in (("cluster.curvePublicKey", pub), ("cluster.curveSecretKey", sec)):
        if key and len(key) != 40:
            raise ConfigError(name, "must be a 40-character Z85 key (python -m mesh.net.curve makes a pair)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", v["cluster.name"]):
        raise ConfigError("cluster.name", "may only contain letters, digits, '.', '_' and '-'")
    if not v["redis.url"].startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis.url", "must start with redis://, rediss:// or unix://")


def _derive_wss(v: dict[str, Any], ip: str) -> None:
    """``wssAddr`` needs both TLS files (readable); ``external.wssAddr`` defaults to ``wss://external.ip:port``."""
    cert, key = v["wssConfig.certFile"], v["wssConfig.keyFile"]
    if not v["wssAddr"]:
        return
    for name, path in (("wssConfig.certFile", cert), ("wssConfig.keyFile", key)):
        if not path:
            raise ConfigError(name, "is required when wssAddr is set")
        if not os.access(path, os.R_OK):
            raise ConfigError(name, f"{path!r} is not a readable file")
    if not v["external.wssAddr"]:
        v["external.wssAddr"] = f"wss://{ip}:{split_hostport(v['wssAddr'])[1]}"


def markdown() -> str:
    """The key reference of docs/config.md."""
    lines = [
        "# Configuration keys",
        "",
        "Generated by `python -m mesh.base.config --markdown` from `mesh/base/config.py`; a test keeps it in sync.",
        "",
        "Every key can be set in the YAML file given with `--config` (nested: `cluster:` / `nodeId:`)",
        "or by its environment variable, which wins over the file. Durations take `500ms`, `60s`,",
        "`3m` or a number of seconds; lists take YAML lists, or comma-separated text in the env.",
        "",
        "| key | env | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for k in KEYS:
        default = "(required)" if k.required else ("(empty)" if k.default in ("", [], None) else repr(k.default))
        if k.secret and k.default:
            default = "(see text)"
        lines.append(f"| `{k.path}` | `{env_name(k.path)}` | {k.type_name} | {default} | {k.doc} |")
    lines += config_compat.markdown()
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - tiny CLI
    if "--markdown" in sys.argv:
        sys.stdout.write(markdown())
