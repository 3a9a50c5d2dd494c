"""WuKongIM's config keys (mesh.base.config_compat): every alias, every ignored key, WuKongIM's types."""
from __future__ import annotations

import os

import pytest

from mesh.base import config
from mesh.base.config import ConfigError, load
from mesh.base.config_compat import ALIASES, IGNORED, go_duration, ignored_why, parse_log_level, translate, url_hostport

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV_NODE = {"WK_CLUSTER_NODEID": "9"}


def write(tmp_path, text):
    p = tmp_path / "wk.yaml"
    p.write_text(text)
    return str(p)


def env_of(key: str) -> str:
    return "WK_" + key.replace(".", "_").upper()


@pytest.mark.parametrize("value,seconds", [
    ("3m", 180.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5), ("100us", 1e-4),
    ("2h45m", 9900.0), (3_000_000_000, 3.0), ("3000000000", 3.0), (2.5e9, 2.5),
    (0, None), ("0", None), ("0s", None), ("", None), (None, None),
])
def test_go_duration(value, seconds):
    got = go_duration(value)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


@pytest.mark.parametrize("value", ["abc", "3x", "-1s", "m", "1m30", True, -5, "1 m"])
def test_go_duration_refuses(value):
    with pytest.raises(ValueError):
        go_duration(value)


@pytest.mark.parametrize("value,want", [
    ("tcp://0.0.0.0:5100", "0.0.0.0:5100"), ("0.0.0.0:5100", "0.0.0.0:5100"), ("ws://h:1/path", "h:1"),
    ("", None), (None, None),
])
def test_url_hostport(value, want):
    assert url_hostport(value) == want


@pytest.mark.parametrize("value", ["tcp://host", ["a"], True])
def test_url_hostport_refuses(value):
    with pytest.raises(ValueError):
        url_hostport(value)


@pytest.mark.parametrize("value,want", [
    (0, "INFO"), (1, "DEBUG"), (2, "INFO"), (3, "WARNING"), (4, "ERROR"), (5, "ERROR"), (6, "ERROR"), (7, "ERROR"),
    ("2", "INFO"), ("info", "INFO"), ("warn", "WARNING"), ("WARNING", "WARNING"), ("Debug", "DEBUG"),
    ("error", "ERROR"),
])
def test_log_level(value, want):
    assert parse_log_level(value) == want


@pytest.mark.parametrize("value", [8, -1, "verbose", True, "9"])
def test_log_level_refuses(value):
    with pytest.raises(ValueError):
        parse_log_level(value)


# one WuKongIM-typed value per alias, and what our key reads from it
ALIAS_CASES = {
    "addr": ("tcp://127.0.0.1:6100", "127.0.0.1:6100"),
    "connIdleTime": ("90s", 90.0),
    "cluster.slotReplicaCount": (2, 2),
    "cluster.addr": ("tcp://10.1.2.3:12110", "10.1.2.3:12110"),
    "cluster.apiUrl": ("http://10.1.2.3:6001", "http://10.1.2.3:6001"),
    "cluster.reqTimeout": ("7s", 7.0),
}


def test_every_alias_has_a_case_and_a_real_target():
    assert set(ALIAS_CASES) == {a.wk for a in ALIASES}
    for a in ALIASES:
        assert a.target in config.KEYS_BY_PATH, a
        assert a.wk not in config.KEYS_BY_PATH, a
        assert ignored_why(a.wk) is None, a


def _nested(key: str, value) -> str:
    import yaml

    d: dict = {}
    cur = d
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return yaml.safe_dump(d)


@pytest.mark.parametrize("wk_key", sorted(ALIAS_CASES))
def test_alias_in_file(tmp_path, wk_key):
    value, want = ALIAS_CASES[wk_key]
    target = next(a.target for a in ALIASES if a.wk == wk_key)
    cfg = load(write(tmp_path, _nested(wk_key, value)), env=ENV_NODE)
    assert cfg[target] == want
    assert cfg.unknown == [] and cfg.ignored == []


@pytest.mark.parametrize("wk_key", sorted(ALIAS_CASES))
def test_alias_in_env_as_wukongim_spells_it(wk_key):
    value, want = ALIAS_CASES[wk_key]
    target = next(a.target for a in ALIASES if a.wk == wk_key)
    cfg = load(None, env={**ENV_NODE, env_of(wk_key): str(value)})
    assert cfg[target] == want and cfg.ignored == []


@pytest.mark.parametrize("wk_key", sorted(ALIAS_CASES))
def test_our_key_wins_and_the_alias_is_reported(tmp_path, wk_key):
    value, _want = ALIAS_CASES[wk_key]
    target = next(a.target for a in ALIASES if a.wk == wk_key)
    default = config.KEYS_BY_PATH[target].default
    import yaml

    data = yaml.safe_load(_nested(wk_key, value))
    cur = data
    parts = target.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    ours = {"tcpAddr": "127.0.0.1:7100", "conn.idleTimeout": 33.0, "cluster.replicaCount": 1,
            "cluster.serverAddr": "127.0.0.1:13110", "external.apiUrl": "http://x:1",
            "cluster.requestTimeout": 4.0}[target]
    assert ours != default
    cur[parts[-1]] = ours
    cfg = load(write(tmp_path, yaml.safe_dump(data)), env=ENV_NODE)
    assert cfg[target] == ours
    assert cfg.ignored == [(wk_key, f"overridden by {target}")]
    cfg = load(None, env={**ENV_NODE, env_of(wk_key): str(value), env_of(target): str(ours)})
    assert cfg[target] == ours and cfg.ignored == [(env_of(wk_key), f"overridden by {env_of(target)}")]


@pytest.mark.parametrize("text,key,want", [
    ("connIdleTime: 0\n", "conn.idleTimeout", 180.0),
    ("connIdleTime: ''\n", "conn.idleTimeout", 180.0),
    ("connIdleTime: 5000000000\n", "conn.idleTimeout", 5.0),
    ("cluster:\n  slotReplicaCount: 0\n", "cluster.replicaCount", 3),
    ("addr: ''\n", "tcpAddr", "0.0.0.0:5100"),
    ("cluster:\n  addr: tcp://0.0.0.0:12110\n", "cluster.serverAddr", "127.0.0.1:12110"),
    ("external:\n  ip: 10.9.8.7\ncluster:\n  addr: tcp://0.0.0.0:12110\n", "cluster.serverAddr", "10.9.8.7:12110"),
    ("logger:\n  level: 3\n", "logger.level", "WARNING"),
    ("logger:\n  level: 0\n", "logger.level", "INFO"),
    ("logger:\n  level: warn\n", "logger.level", "WARNING"),
])
def test_wukongim_values(tmp_path, text, key, want):
    assert load(write(tmp_path, text), env=ENV_NODE)[key] == want


def test_logger_level_int_from_env():
    assert load(None, env={**ENV_NODE, "WK_LOGGER_LEVEL": "4"})["logger.level"] == "ERROR"


def test_lists_from_env_split_on_spaces():
    cfg = load(None, env={**ENV_NODE, "WK_ETCD_ENDPOINTS": "a:1 b:2"})
    assert cfg["etcd.endpoints"] == ["a:1", "b:2"]


@pytest.mark.parametrize("text,key", [
    ("connIdleTime: soon\n", "connIdleTime"),
    ("addr: tcp://nowhere\n", "addr"),
    ("cluster:\n  slotReplicaCount: many\n", "cluster.slotReplicaCount"),
    ("cluster:\n  slotReplicaCount: 12\n", "cluster.replicaCount"),
    ("logger:\n  level: 9\n", "logger.level"),
])
def test_bad_wukongim_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), env=ENV_NODE)
    assert e.value.key == key


def _sample_key(pattern: str) -> str:
    return pattern + "x" if pattern.endswith(".") else pattern


@pytest.mark.parametrize("pattern,why", IGNORED)
def test_every_ignored_key_is_accepted_and_named(tmp_path, pattern, why):
    key = _sample_key(pattern)
    assert why
    assert key not in config.KEYS_BY_PATH
    cfg = load(write(tmp_path, _nested(key, 1)), env=ENV_NODE)
    assert cfg.ignored == [(key, why)] and cfg.unknown == []
    cfg = load(None, env={**ENV_NODE, env_of(key): "1"})
    assert cfg.ignored == [(env_of(key), why)]


def test_no_ignored_pattern_hides_one_of_our_keys():
    for key in config.KEYS:
        assert ignored_why(key.path) is None, key.path
    # our own keys are never translated or ignored, even if a table entry matched them
    got = translate({"tcpAddr": "1.2.3.4:1", "addr": "tcp://h:2"}, {}, {"tcpAddr", "addr"})
    assert got.raw == {"tcpAddr": "1.2.3.4:1", "addr": "tcp://h:2"} and got.ignored == []


GUIDE_FILE = """
mode: "release"
addr: "tcp://127.0.0.1:5100"
httpAddr: "127.0.0.1:5001"
wsAddr: "ws://127.0.0.1:5200"
connIdleTime: "3m"
tokenAuthOn: false
rootDir: "./wukongim-node1"
logger:
  level: 2
  dir: ""
  lineNum: false
cluster:
  nodeId: 1001
  serverAddr: "192.168.1.101:11110"
  slotReplicaCount: 3
  slotCount: 64
  initNodes:
    - "1001@192.168.1.101:11110"
    - "1002@192.168.1.102:11110"
  heartbeatTick: 1
  electionTick: 10
  maxSizePerMsg: 1048576
  checkQuorum: true
  dialTimeout: "5s"
  requestTimeout: "10s"
  tls:
    enabled: true
    certFile: "/path/to/cluster.crt"
  batchSize: 100
external:
  ip: "192.168.1.101"
  tcpAddr: "192.168.1.101:5100"
  wsAddr: "ws://192.168.1.101:5200"
  apiUrl: "http://192.168.1.101:5001"
conversation:
  on: true
  cacheExpire: 2h
stress: false
"""


def test_a_wukongim_file_from_the_guide_loads(tmp_path):
    cfg = load(write(tmp_path, GUIDE_FILE), env={})
    assert cfg.node_id == 1001 and cfg["tcpAddr"] == "127.0.0.1:5100" and cfg["conn.idleTimeout"] == 180.0
    assert cfg["logger.level"] == "INFO" and cfg["tokenAuthOn"] is False and cfg["cluster.requestTimeout"] == 10.0
    assert cfg.unknown == []
    assert [k for k, _why in cfg.ignored] == sorted([
        "cluster.initNodes", "cluster.heartbeatTick", "cluster.electionTick", "cluster.maxSizePerMsg",
        "cluster.checkQuorum", "cluster.dialTimeout", "cluster.tls.enabled", "cluster.tls.certFile",
        "cluster.batchSize", "logger.lineNum", "conversation.on", "conversation.cacheExpire", "stress"])


def test_docs_list_aliases_and_ignored_keys():
    with open(os.path.join(ROOT, "docs", "config.md")) as fh:
        doc = fh.read()
    for a in ALIASES:
        assert f"| `{a.wk}` | `{env_of(a.wk)}` | `{a.target}` |" in doc
    for pattern, why in IGNORED:
        assert f"`{pattern + '*' if pattern.endswith('.') else pattern}` | {why} |" in doc
