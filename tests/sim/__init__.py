"""Deterministic simulation of the replication core (``cluster.py``); run many seeds with
``python -m tests.sim --seeds N`` (``make simulate SEEDS=N``), replay one with ``--seed S --trace``."""
