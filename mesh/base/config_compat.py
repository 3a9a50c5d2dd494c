"""WuKongIM's configuration keys: the aliases of ours, and the keys accepted but ignored.

This module owns the table that lets a config file (or ``WK_*`` environment) written
for WuKongIM v2.2.5 start a Skein node: each WuKongIM key that has a Skein equivalent
is translated to it, with WuKongIM's type (``addr`` is a ``tcp://`` URL,
``connIdleTime`` a Go duration where a bare number is nanoseconds, ``logger.level`` an
int), and each key Skein has no use for is accepted and named, so the node can log one
warning line per ignored key. ``translate`` is pure (no I/O); ``mesh.base.config.load``
calls it before validating.

Rules (as in WuKongIM, ``internal/options/options.go``): a zero or empty value means
"use the default", so it is dropped; when a file or the environment sets both the
WuKongIM key and Skein's own, Skein's key wins and the alias is reported as ignored.
The environment variable of an alias is spelled from the WuKongIM key the usual way
(``cluster.slotReplicaCount`` -> ``WK_CLUSTER_SLOTREPLICACOUNT``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# ----------------------------------------------------------------------------- value conversions

_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(value: Any) -> float | None:
    """Seconds from a Go duration (``"3m"``, ``"1m30s"``, ``"500ms"``); a bare number is
    nanoseconds, as viper reads it. ``None`` for zero/empty (WuKongIM: use the default)."""
    if isinstance(value, bool):
        raise ValueError("expected a Go duration such as '3m' or '500ms'")
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return value * 1e-9 or None
    text = str(value).strip()
    if not text:
        return None
    if re.fullmatch(r"\d+", text):
        return int(text) * 1e-9 or None
    if text.startswith("-"):
        raise ValueError("must not be negative")
    pos, total = 0, 0.0
    for m in _GO_DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"{value!r} is not a Go duration such as '3m', '1m30s' or '500ms'")
    return total or None


def url_hostport(value: Any) -> str | None:
    """``"tcp://0.0.0.0:5100"`` -> ``"0.0.0.0:5100"``; empty -> None."""
    if isinstance(value, (dict, list, bool)):
        raise ValueError("expected an address such as 'tcp://0.0.0.0:5100'")
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    text = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", text).split("/", 1)[0]
    if ":" not in text:
        raise ValueError(f"{value!r} has no port (expected e.g. 'tcp://0.0.0.0:5100')")
    return text


def positive_int(value: Any) -> int | None:
    """An int where 0 (and empty) means "use the default"."""
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        n = int(value) if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None
    return n or None


def plain(value: Any) -> Any:
    """The value as given; empty means "use the default"."""
    return None if value is None or value == "" else value


# WuKongIM's int logger.level -> ours (zap's scale shifted by 2: 1 debug, 2 info, 3 warn, 4 error, 5-7 above)
LOG_LEVELS = {0: "INFO", 1: "DEBUG", 2: "INFO", 3: "WARNING", 4: "ERROR", 5: "ERROR", 6: "ERROR", 7: "ERROR"}
_LEVEL_NAMES = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING", "ERROR": "ERROR"}


def parse_log_level(value: Any) -> str:
    """``logger.level``: a name (any case; ``warn`` too) or WuKongIM's int (0 = default: info,
    or debug with ``mode: debug``; 1 debug, 2 info, 3 warn, 4-7 error)."""
    if isinstance(value, bool):
        raise ValueError("expected a log level (DEBUG, INFO, WARNING, ERROR or WuKongIM's 0-7)")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n not in LOG_LEVELS:
            raise ValueError(f"{value!r}: WuKongIM's int levels are 0-7 (1 debug, 2 info, 3 warn, 4 error)")
        return LOG_LEVELS[n]
    name = _LEVEL_NAMES.get(str(value).strip().upper())
    if name is None:
        raise ValueError(f"{value!r} is not a log level (DEBUG, INFO, WARNING, ERROR or WuKongIM's 0-7)")
    return name


# ----------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class Alias:
    wk: str  # WuKongIM's key
    target: str  # ours
    convert: Callable[[Any], Any]  # WuKongIM's type -> a value our key's parser takes; None = not set
    doc: str


ALIASES: tuple[Alias, ...] = (
    Alias("addr", "tcpAddr", url_hostport, "URL such as `tcp://0.0.0.0:5100`."),
    Alias("connIdleTime", "conn.idleTimeout", go_duration, "Go duration (`3m`; a bare number is nanoseconds)."),
    Alias("cluster.slotReplicaCount", "cluster.replicaCount", positive_int, "int (0: default)."),
    Alias("cluster.addr", "cluster.serverAddr", url_hostport,
          "URL such as `tcp://0.0.0.0:11110`; a 0.0.0.0 host becomes `external.ip` (or 127.0.0.1), since peers "
          "connect to `cluster.serverAddr` as given."),
    Alias("cluster.apiUrl", "external.apiUrl", plain, "URL of this node's HTTP API."),
    Alias("cluster.reqTimeout", "cluster.requestTimeout", go_duration, "Go duration (`10s`)."),
)
ALIASES_BY_KEY: dict[str, Alias] = {a.wk: a for a in ALIASES}

# WuKongIM keys (and whole sections, ending in ".") accepted and ignored, with why.
_RAFT = "Skein replicates slots with its own log (no Raft tuning)"
_POOL = "WuKongIM worker-pool and cache sizing; Skein has no equivalent"
IGNORED: tuple[tuple[str, str], ...] = (
    ("cluster.initNodes", "membership comes from etcd"),
    ("customerService.visitorsOn", "not used, as in WuKongIM (visitors are uids ending in customerService.visitorsSuffix)"),
    ("agent.webhook.maxPushCount", "not used, as in WuKongIM"),
    ("cluster.seed", "membership comes from etcd"),
    ("cluster.role", "every Skein node is a full replica"),
    ("cluster.channelReplicaCount", "channels live in slots (cluster.replicaCount)"),
    ("cluster.tickInterval", _RAFT),
    ("cluster.electionIntervalTick", _RAFT),
    ("cluster.heartbeatIntervalTick", _RAFT),
    ("cluster.pongMaxTick", _RAFT),
    ("cluster.channelReactorSubCount", _POOL),
    ("cluster.slotReactorSubCount", _POOL),
    ("cluster.channelDestoryAfterIdleTick", _POOL),
    # keys of our users' cluster configuration guide
    ("cluster.heartbeatTick", "Skein's is cluster.heartbeatInterval (and cluster.leaseTTL)"),
    ("cluster.electionTick", "Skein's failover time is cluster.leaseTTL"),
    ("cluster.maxSizePerMsg", _RAFT),
    ("cluster.maxInflightMsgs", _RAFT),
    ("cluster.checkQuorum", _RAFT),
    ("cluster.preVote", _RAFT),
    ("cluster.maxLogSize", _RAFT),
    ("cluster.logCompactThreshold", _RAFT),
    ("cluster.snapshotEntries", _RAFT),
    ("cluster.compactionOverhead", _RAFT),
    ("cluster.dialTimeout", "node-to-node connections are ZeroMQ's (see cluster.requestTimeout)"),
    ("cluster.maxConnections", "node-to-node connections are ZeroMQ's"),
    ("cluster.keepAlive", "node-to-node connections are ZeroMQ's"),
    ("cluster.keepAlivePeriod", "node-to-node connections are ZeroMQ's"),
    ("cluster.tls.", "node-to-node traffic is encrypted with cluster.curvePublicKey/curveSecretKey"),
    ("cluster.auth.", "node-to-node peers are authenticated with cluster.curvePublicKey/curveSecretKey"),
    ("cluster.batchSize", _POOL),
    ("cluster.batchTimeout", _POOL),
    ("cluster.workerCount", _POOL),
    ("cluster.queueSize", _POOL),
    ("cluster.maxMemoryUsage", "see store.memoryLimit"),
    ("cluster.gcInterval", _POOL),
    ("external.autoGetExternalIP", "set external.ip"),
    ("external.managerAddr", "the manager is on manager.addr"),
    ("logger.lineNum", "log lines have a fixed format"),
    ("logger.traceOn", "log lines have a fixed format"),
    ("logger.traceMaxMsgCount", "log lines have a fixed format"),
    ("logger.loki.", "ship the log file (logger.dir) instead"),
    ("messageRetry.workerCount", _POOL),
    ("conversation.", "conversations are stored at once, with no cache to tune"),
    ("channel.", _POOL),
    ("tmpChannel.", _POOL),
    ("datasource.", "no datasource calls; channel data comes from the HTTP API"),
    ("webhook.grpcAddr", "webhooks are HTTP POSTs to webhook.httpAddr"),
    ("managerUID", "the manager uid is ____manager"),
    ("stress", "no stress mode (tokenAuthOn is set on its own)"),
    ("violent", _POOL),
    ("pprofOn", "profile with py-spy instead"),
    ("deadlockCheck", _POOL),
    ("userMsgQueueMaxSize", "see conn.maxPendingFrames and conn.outboundMaxBytes"),
    ("eventPoolSize", _POOL),
    ("deliveryMsgPoolSize", _POOL),
    ("handlePoolSize", _POOL),
    ("jwt.", "the web manager logs in with managerToken"),
    ("auth.", "the web manager logs in with managerToken"),
    ("trace.", "metrics are on the manager port's /metrics"),
    ("plugin.", "no plugins"),
    ("tag.", _POOL),
    ("oldV1Api", "the v1 API is not served"),
    ("migrateStartStep", "no v1 data migration"),
)


def ignored_why(path: str) -> str | None:
    """Why WuKongIM's ``path`` is accepted and ignored, or None if it is not such a key."""
    for pattern, why in IGNORED:
        if path == pattern or (pattern.endswith(".") and path.startswith(pattern)):
            return why
    return None


def _env_name(key: str) -> str:
    return "WK_" + key.replace(".", "_").upper()


def _ignored_in_env(env: Mapping[str, str], known_env: set[str]) -> dict[str, str]:
    """``WK_*`` variables of ignored keys -> why (a section's variables by their prefix)."""
    out = {}
    for pattern, why in IGNORED:
        if pattern.endswith("."):
            pre = _env_name(pattern[:-1]) + "_"
            out.update((n, why) for n in env if n.startswith(pre) and n not in known_env)
        elif _env_name(pattern) in env and _env_name(pattern) not in known_env:
            out[_env_name(pattern)] = why
    return out


@dataclass
class Translated:
    raw: dict[str, Any]  # the file's keys with aliases replaced by ours
    env: dict[str, str | Any]  # the environment with alias variables replaced by ours
    ignored: list[tuple[str, str]]  # (key or env variable, why), sorted


def translate(raw: Mapping[str, Any], env: Mapping[str, str], known: set[str]) -> Translated:
    """Apply the alias table to a flattened file ``raw`` and to ``env``; name the ignored keys.

    ``known`` is the set of Skein's own keys: one of them is never treated as an alias or
    ignored (so a key Skein adds later wins over this table).
    """
    known_env = {_env_name(k) for k in known}
    out = dict(raw)
    new_env: dict[str, Any] = dict(env)
    ignored: dict[str, str] = {}
    for a in ALIASES:
        if a.wk in known:
            continue
        if a.wk in out:
            value = out.pop(a.wk)
            if a.target in raw:
                ignored[a.wk] = f"overridden by {a.target}"
            else:
                try:
                    got = a.convert(value)
                except ValueError as exc:
                    raise AliasError(a.wk, a.target, str(exc)) from None
                if got is not None:
                    out[a.target] = _fix(a, got, out)
        name = _env_name(a.wk)
        if name in env:
            value = new_env.pop(name)
            if _env_name(a.target) in env:
                ignored[name] = f"overridden by {_env_name(a.target)}"
            else:
                try:
                    got = a.convert(value)
                except ValueError as exc:
                    raise AliasError(name, a.target, str(exc)) from None
                if got is not None:
                    new_env[_env_name(a.target)] = _fix(a, got, out)
    for path in list(out):
        if path in known:
            continue
        why = ignored_why(path)
        if why is not None:
            out.pop(path)
            ignored[path] = why
    ignored.update(_ignored_in_env(env, known_env))
    return Translated(out, new_env, sorted(ignored.items()))


def _fix(a: Alias, value: Any, raw: Mapping[str, Any]) -> Any:
    """Cross-key adjustments of a converted alias value."""
    if a.target == "cluster.serverAddr":
        host, _, port = str(value).rpartition(":")
        if host in ("", "0.0.0.0", "[::]", "::"):
            host = str(raw.get("external.ip") or "127.0.0.1")
        return f"{host}:{port}"
    return value


class AliasError(ValueError):
    def __init__(self, key: str, target: str, problem: str) -> None:
        self.key = key
        self.target = target
        super().__init__(f"{problem} (WuKongIM key {key}, Skein's {target})")


def markdown() -> list[str]:
    """The WuKongIM section of docs/config.md."""
    lines = [
        "",
        "## WuKongIM keys",
        "",
        "A config file written for WuKongIM v2.2.5 loads as it is. These WuKongIM keys are aliases of ours,",
        "read with WuKongIM's type; their environment variables are spelled from the WuKongIM key",
        "(`cluster.slotReplicaCount` -> `WK_CLUSTER_SLOTREPLICACOUNT`). A zero or empty value means the",
        "default, as in WuKongIM. When both are set, our key wins and the alias is logged as ignored.",
        "",
        "| WuKongIM key | env | our key | WuKongIM type |",
        "|---|---|---|---|",
    ]
    for a in ALIASES:
        lines.append(f"| `{a.wk}` | `{_env_name(a.wk)}` | `{a.target}` | {a.doc} |")
    lines += [
        "",
        "Keys of the same name take WuKongIM's values too: `logger.level` also takes WuKongIM's int",
        "(0 default, 1 debug, 2 info, 3 warn, 4-7 error), lists in the env may be separated by spaces.",
        "Durations of keys we share (`messageRetry.interval`, ...) read a bare number as **seconds**, where",
        "WuKongIM reads nanoseconds; write them with a unit (`60s`) in a file meant for both.",
        "",
        "Differences in defaults: WuKongIM's `tokenAuthOn` is **false** (any token, every connection at",
        "slave level: several devices of one uid are not kicked and `msg.offline` fires for every",
        "recipient; a banned uid is still refused), ours is **true**. WuKongIM's `mode` is `debug` when unset,",
        "ours `release`; its `cluster.nodeId` defaults to 1001, ours is required.",
        "",
        "These WuKongIM keys (or every key of a section ending in `.`) are accepted and ignored; the node logs",
        "one warning line per key it ignored, at start-up:",
        "",
        "| WuKongIM key | why it is ignored |",
        "|---|---|",
    ]
    for pattern, why in IGNORED:
        shown = pattern + "*" if pattern.endswith(".") else pattern
        lines.append(f"| `{shown}` | {why} |")
    lines.append("")
    return lines
