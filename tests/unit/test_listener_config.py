"""The listener keys: wssAddr/wssConfig (WuKongIM's shape) and proxyProtocol.*, from YAML and WK_* variables."""
from __future__ import annotations

import pytest

from mesh.base.config import ConfigError, load


def cfg_file(tmp_path, text: str = "") -> str:
    p = tmp_path / "c.yaml"
    p.write_text("cluster:\n  nodeId: 1\n" + text)
    return str(p)


def test_defaults_are_off(tmp_path) -> None:
    cfg = load(cfg_file(tmp_path), env={})
    assert cfg["wssAddr"] == "" and cfg["external.wssAddr"] == ""
    assert cfg["wssConfig.certFile"] == "" and cfg["wssConfig.keyFile"] == ""
    assert cfg["proxyProtocol.tcp"] is False and cfg["proxyProtocol.ws"] is False
    assert cfg["proxyProtocol.timeout"] == 5.0


def test_wss_as_wukongim_writes_it(tmp_path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    cfg = load(cfg_file(tmp_path, f"wssAddr: wss://0.0.0.0:5210\nwssConfig:\n  certFile: {cert}\n  keyFile: {key}\n"
                                  "external:\n  ip: 10.0.0.9\n"), env={})
    assert cfg["wssAddr"] == "wss://0.0.0.0:5210"
    assert cfg["external.wssAddr"] == "wss://10.0.0.9:5210"
    env = {"WK_WSSADDR": "wss://0.0.0.0:6210", "WK_WSSCONFIG_CERTFILE": str(cert), "WK_WSSCONFIG_KEYFILE": str(key),
           "WK_EXTERNAL_WSSADDR": "wss://im.example.com", "WK_PROXYPROTOCOL_TCP": "true",
           "WK_PROXYPROTOCOL_WS": "1", "WK_PROXYPROTOCOL_TIMEOUT": "500ms"}
    cfg = load(cfg_file(tmp_path), env=env)
    assert (cfg["wssAddr"], cfg["external.wssAddr"]) == ("wss://0.0.0.0:6210", "wss://im.example.com")
    assert cfg["proxyProtocol.tcp"] is True and cfg["proxyProtocol.ws"] is True
    assert cfg["proxyProtocol.timeout"] == 0.5


def test_wss_needs_both_readable_files(tmp_path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as exc:
        load(cfg_file(tmp_path, f"wssAddr: wss://0.0.0.0:5210\nwssConfig:\n  certFile: {cert}\n"), env={})
    assert exc.value.key == "wssConfig.keyFile"
    with pytest.raises(ConfigError) as exc:
        load(cfg_file(tmp_path, f"wssAddr: wss://0.0.0.0:5210\nwssConfig:\n  certFile: {tmp_path}/nope.pem\n"
                                f"  keyFile: {cert}\n"), env={})
    assert exc.value.key == "wssConfig.certFile" and "not a readable file" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load(cfg_file(tmp_path, "wssAddr: wss://0.0.0.0\n"), env={})
    assert exc.value.key == "wssAddr"
    with pytest.raises(ConfigError) as exc:
        load(cfg_file(tmp_path, "proxyProtocol:\n  timeout: 0\n"), env={})
    assert exc.value.key == "proxyProtocol.timeout"
