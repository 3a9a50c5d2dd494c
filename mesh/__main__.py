"""`python -m mesh --config FILE`: run one node without gunicorn (tests, development).

Exit codes: 0 after a graceful stop, 2 for a bad configuration (the message names the
key), 3 when the node cannot join (etcd unreachable, duplicate node id).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh", description="Run one Skein node.")
    parser.add_argument("--config", help="YAML config file (every key also via WK_* env vars)")
    args = parser.parse_args(argv)

    from mesh.base import config as config_mod
    from mesh.base import logs

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"skein: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logs.setup(cfg.node_id, "DEBUG" if cfg["mode"] == "debug" else cfg["logger.level"], cfg["logger.dir"])
    from mesh.base import sched

    sched.apply(cfg["schedBatch"])

    from coordinator.etcd_client import EtcdUnavailable
    from coordinator.membership import DuplicateNodeError
    from mesh.node import Node

    node = Node(cfg)
    done = gevent.event.Event()

    def on_term(*_a):
        gevent.spawn(lambda: (node.graceful_stop(), done.set()))

    gevent.signal_handler(signal.SIGTERM, on_term)
    gevent.signal_handler(signal.SIGINT, on_term)
    try:
        node.start()
    except (DuplicateNodeError, EtcdUnavailable) as exc:
        logging.getLogger("mesh").error("cannot start: %s", exc)
        print(f"skein: cannot start node {cfg.node_id}: {exc}", file=sys.stderr)
        node.close()
        return 3
    except OSError as exc:
        logging.getLogger("mesh").error("cannot start: %s", exc)
        print(f"skein: cannot start node {cfg.node_id}: {exc}", file=sys.stderr)
        node.close()
        return 3
    done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
