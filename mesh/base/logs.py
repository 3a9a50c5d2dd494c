"""Logging setup: one line per event, every line tagged with the node id.

Format: ``2026-11-22T10:00:00.123Z INFO node=2 coordinator.membership: joined cluster=skein``.
Secrets never reach this module: callers log redacted config only.
"""
from __future__ import annotations

import logging
import os
import sys
import time

_NODE_ID = "-"


class _NodeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.node = _NODE_ID
        msg = record.getMessage()
        if "\n" in msg:  # keep one line per event
            record.msg = msg.replace("\n", "\\n")
            record.args = None
        return True


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        t = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{t}.{int(record.msecs):03d}Z"

    def formatException(self, ei) -> str:  # noqa: N802 - one line per event
        return super().formatException(ei).replace("\n", " | ")


FORMAT = "%(asctime)s %(levelname)s node=%(node)s %(name)s: %(message)s"


def setup(node_id: int | str, level: str = "INFO", log_dir: str = "") -> None:
    """Configure the root logger for this node process."""
    global _NODE_ID
    _NODE_ID = str(node_id)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(log_dir, f"skein-{node_id}.log")))
    fmt = _UTCFormatter(FORMAT)
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(_NodeFilter())
        root.addHandler(h)
    root.setLevel(level)
    for noisy in ("urllib3", "grpc", "geventwebsocket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
