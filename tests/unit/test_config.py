"""Config loading: YAML, WK_* overrides, validation errors that name the key, docs in sync."""
from __future__ import annotations

import os

import pytest

from mesh.base import config
from mesh.base.config import ConfigError, env_name, load, parse_duration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_env_name_rule():
    assert env_name("cluster.nodeId") == "WK_CLUSTER_NODEID"
    assert env_name("external.tcpAddr") == "WK_EXTERNAL_TCPADDR"
    assert env_name("rootDir") == "WK_ROOTDIR"


def test_yaml_defaults_and_derived(tmp_path):
    cfg = load(write(tmp_path, "cluster:\n  nodeId: 7\n  serverAddr: 10.0.0.1:11110\n"), env={})
    assert cfg.node_id == 7
    assert cfg["cluster.slotCount"] == 64 and cfg["cluster.replicaCount"] == 3
    assert cfg["cluster.pubAddr"] == "10.0.0.1:11111"
    assert cfg["external.tcpAddr"] == "127.0.0.1:5100"
    assert cfg["external.wsAddr"] == "ws://127.0.0.1:5200"
    assert cfg["external.apiUrl"] == "http://127.0.0.1:5001"
    assert cfg["tokenAuthOn"] is True
    assert cfg["conn.idleTimeout"] == 180.0


def test_env_overrides_file(tmp_path):
    path = write(tmp_path, "cluster:\n  nodeId: 1\n  replicaCount: 3\n")
    env = {"WK_CLUSTER_NODEID": "5", "WK_CLUSTER_REPLICACOUNT": "2", "WK_ETCD_ENDPOINTS": "a:1, b:2",
           "WK_CONN_IDLETIMEOUT": "90s", "WK_TOKENAUTHON": "false", "WK_MESSAGERETRY_INTERVAL": "500ms"}
    cfg = load(path, env=env)
    assert cfg.node_id == 5 and cfg["cluster.replicaCount"] == 2
    assert cfg["etcd.endpoints"] == ["a:1", "b:2"]
    assert cfg["conn.idleTimeout"] == 90.0 and cfg["tokenAuthOn"] is False
    assert cfg["messageRetry.interval"] == 0.5


def test_env_only_without_file():
    cfg = load(None, env={"WK_CLUSTER_NODEID": "3"})
    assert cfg.node_id == 3


@pytest.mark.parametrize("text,env,key", [
    ("mode: release\n", {}, "cluster.nodeId"),
    ("cluster:\n  nodeId: 0\n", {}, "cluster.nodeId"),
    ("cluster:\n  nodeId: 2000\n", {}, "cluster.nodeId"),
    ("cluster:\n  nodeId: abc\n", {}, "cluster.nodeId"),
    ("cluster:\n  nodeId: 1\n", {"WK_CLUSTER_SLOTCOUNT": "lots"}, "cluster.slotCount"),
    ("cluster:\n  nodeId: 1\nhttpAddr: nowhere\n", {}, "httpAddr"),
    ("cluster:\n  nodeId: 1\n  leaseTTL: 1\n", {}, "cluster.leaseTTL"),
    ("cluster:\n  nodeId: 1\nconn:\n  idleTimeout: soon\n", {}, "conn.idleTimeout"),
    ("cluster:\n  nodeId: 1\nmode: fast\n", {}, "mode"),
    ("cluster:\n  nodeId: 1\nredis:\n  url: http://x\n", {}, "redis.url"),
    ("cluster:\n  nodeId: 1\netcd:\n  endpoints: []\n", {}, "etcd.endpoints"),
    ("cluster:\n  nodeId: 1\ntokenAuthOn: maybe\n", {}, "tokenAuthOn"),
])
def test_bad_values_name_the_key(tmp_path, text, env, key):
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), env=env)
    assert e.value.key == key
    assert key in str(e.value) and env_name(key) in str(e.value)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(str(tmp_path / "nope.yaml"), env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(write(tmp_path, "a: [1,\n"), env={})


def test_unknown_keys_reported_wukongim_keys_accepted(tmp_path):
    cfg = load(write(tmp_path, "cluster:\n  nodeId: 1\n  heartbeatTick: 1\n  initNodes: ['1@a']\nfoo: 1\n"), env={})
    assert cfg.unknown == ["foo"]


def test_secrets_redacted(tmp_path):
    cfg = load(write(tmp_path, "cluster:\n  nodeId: 1\nmanagerToken: s3cret\nredis:\n  url: redis://:pw@h:1/0\n"),
               env={})
    red = cfg.redacted()
    assert red["managerToken"] == "***" and "pw" not in red["redis.url"]
    assert "s3cret" not in repr(red)


def test_duration_parser():
    assert parse_duration("3m") == 180 and parse_duration("250ms") == 0.25 and parse_duration(2) == 2.0
    with pytest.raises(ValueError):
        parse_duration("-1s")


def test_every_key_has_default_doc_and_is_in_docs():
    with open(os.path.join(ROOT, "docs", "config.md")) as fh:
        doc = fh.read()
    assert doc == config.markdown(), "docs/config.md is stale: run `make docs`"
    for key in config.KEYS:
        assert key.doc, key.path
        assert key.required or key.default is not None, key.path
        assert f"`{key.path}`" in doc and env_name(key.path) in doc


def test_openapi_document_in_repo_is_current():
    import json

    from api.openapi import spec

    with open(os.path.join(ROOT, "docs", "openapi.json")) as fh:
        assert json.load(fh) == json.loads(json.dumps(spec())), "docs/openapi.json is stale: run `make docs`"


def test_bare_on_key_is_not_a_boolean(tmp_path):
    cfg = load(write(tmp_path, "cluster:\n  nodeId: 1\ndemo:\n  on: false\nmanager:\n  on: true\n"), env={})
    assert cfg["demo.on"] is False and cfg["manager.on"] is True and cfg.unknown == []
