"""Backups of a node's slots (DuckDB to Parquet) and restores from them.

``export(store, path, manifest)`` runs inside the node: one read transaction copies
every table of the node's store (``hot``, each ``arch_<slot>``, ``snap``, ``meta``) to
Parquet files, so the copy is a consistent snapshot taken while writes go on, and writes
``manifest.json`` (node id, cluster name, time, the slot table, each slot's last log
index and term, row counts).

``restore_node(backup, root)`` rebuilds a stopped node's data directory from such a
backup. ``restore_cluster(backups, roots, etcd)`` restores every node of a cluster into
fresh data directories and writes the backed-up slot table into etcd with every term
raised by one, so the new leaders start above every term in the restored logs.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import duckdb

from mesh.storage.log_store import LogStore
from mesh.storage.store import COLUMNS

MANIFEST = "manifest.json"


def export(store: LogStore, path: str, manifest: dict) -> dict:
    """Copy the store to Parquet files under ``path`` (consistently) and write the manifest."""
    os.makedirs(path, exist_ok=True)
    arch = sorted(store.archived_slots())

    def run(cur) -> dict:
        counts = {}
        cur.execute("BEGIN TRANSACTION")
        try:
            for table in ["hot", "snap", "meta"] + [f"arch_{s}" for s in arch]:
                target = os.path.join(path, f"{table}.parquet").replace("'", "''")
                cur.execute(f"COPY (SELECT * FROM {table}) TO '{target}' (FORMAT PARQUET)")
                counts[table] = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            cur.execute("COMMIT")
        return counts
    counts = store.query(run)
    out = dict(manifest)
    out["tables"] = counts
    out["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(os.path.join(path, MANIFEST), "w") as fh:
        json.dump(out, fh, indent=2)
    return out


def read_manifest(backup: str) -> dict:
    with open(os.path.join(backup, MANIFEST)) as fh:
        return json.load(fh)


def restore_node(backup: str, root: str, *, force: bool = False) -> dict:
    """Rebuild ``<root>/skein.duckdb`` from ``backup`` (the node must be stopped)."""
    manifest = read_manifest(backup)
    os.makedirs(root, exist_ok=True)
    db = os.path.join(root, "skein.duckdb")
    wal_dir = os.path.join(root, "wal")
    if os.path.exists(db) or os.path.isdir(wal_dir):
        if not force:
            raise FileExistsError(f"{root} holds a store; stop the node and pass --force to replace it")
        if os.path.exists(db):
            os.remove(db)
        if os.path.exists(db + ".wal"):
            os.remove(db + ".wal")
        shutil.rmtree(wal_dir, ignore_errors=True)
    con = duckdb.connect(db)
    try:
        con.execute(f"CREATE TABLE hot (slot SMALLINT, {COLUMNS})")
        con.execute("CREATE TABLE snap (slot SMALLINT, idx BIGINT, term BIGINT, data BLOB)")
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        for table in manifest["tables"]:
            if table.startswith("arch_"):
                con.execute(f"CREATE TABLE {table} ({COLUMNS})")
            src = os.path.join(backup, f"{table}.parquet").replace("'", "''")
            con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet('{src}')")
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in manifest["tables"]}
        con.execute("DELETE FROM meta WHERE key = 'wal_pos'")  # the restored node starts a new log
    finally:
        con.close()
    if counts != manifest["tables"]:
        raise RuntimeError(f"restored row counts {counts} differ from the backup's {manifest['tables']}")
    return {"node_id": manifest["node_id"], "rows": sum(counts.values()), "tables": len(counts)}


def restore_cluster(backups: dict[int, str], roots: dict[int, str], etcd, *, force: bool = False) -> dict:
    """Restore every node's backup and write the slot table (terms + 1) into an etcd without one."""
    from coordinator.slot_table import SlotTable

    manifests = {nid: read_manifest(path) for nid, path in backups.items()}
    newest = max(manifests.values(), key=lambda m: m["slot_table"]["version"] if m.get("slot_table") else -1)
    if not newest.get("slot_table"):
        raise ValueError("no backup carries a slot table")
    table = SlotTable.from_bytes(json.dumps(newest["slot_table"]))
    for s in table.slots:
        top = max([s.term] + [m["slots"].get(str(s.id), [0, 0])[1] for m in manifests.values()])
        s.term = top + 1
    table.version += 1
    key = etcd.key("slots")
    if etcd.get(key)[0] is not None and not force:
        raise FileExistsError("etcd already holds a slot table for this cluster; pass --force to replace it")
    restored = {nid: restore_node(backups[nid], roots[nid], force=force) for nid in backups}
    etcd.put(key, table.to_bytes())
    return {"nodes": restored, "slot_table_version": table.version}
