"""Copies of a running node's data directory (`POST /cluster/snapshot`) and recovery from them.

Our users' guide backs a node up by calling ``POST /cluster/snapshot`` and then copying
its data directory (``rsync``/``cp -a``) while the node keeps running, and restores it by
stopping the node, copying the directory back and starting it. The live files are not
safe to copy while the node writes them (DuckDB rewrites blocks of ``skein.duckdb`` in
place; the write-ahead log drops segments), so:

* ``take(store)`` writes ``<rootDir>/snapshot/``: a complete DuckDB copy of the store
  made in one read transaction (every durable write up to a point, consistent), and
  ``info.json`` (the run it belongs to, the write-ahead log position it covers, the
  time). It is built in ``snapshot.tmp/``, synced, then renamed into place, so a copy
  of the directory holds either the previous snapshot or the new one, never half of one.
* while a store is open, ``<rootDir>/store.open`` names the run (a random id) and
  ``store.open.stat`` records that file's inode and change time (ctime); a clean close
  removes both. A copy (cp -a, rsync, a restore) cannot keep the ctime, so at the next
  open ``recover(root)`` can tell the three cases apart: no marker (clean stop: the
  live files are good), the marker with its own ctime (a crash: the live files are
  good, the store replays its log as always), a marker with another ctime (the
  directory was copied while the node ran: the live files may be torn). In the last
  case, when the snapshot belongs to that same run, the live files are replaced by the
  snapshot: the node comes back exactly as it was at the snapshot and replication
  sends it what it lacks. Without such a snapshot it logs an error and tries the live
  files.

``classify`` is the pure decision; the rest is file handling.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh.storage.store import Store

log = logging.getLogger("mesh.storage.snapshot")

SNAPSHOT_DIR = "snapshot"
DB_FILE = "skein.duckdb"
MARKER = "store.open"
STAMP = "store.open.stat"
INFO = "info.json"

CLEAN, CRASHED, COPIED, COPIED_NO_SNAPSHOT = "clean", "crashed", "copied", "copied-without-snapshot"


def classify(marker: dict | None, stamp: dict | None, snapshot_run: str | None) -> str:
    """What the data directory is: ``marker`` = the marker's run id, inode and ctime now; ``stamp`` = recorded."""
    if marker is None:
        return CLEAN
    same = stamp is not None and stamp.get("run") == marker["run"] and stamp.get("ino") == marker["ino"] \
        and stamp.get("ctime_ns") == marker["ctime_ns"]
    if same:
        return CRASHED
    return COPIED if snapshot_run is not None and snapshot_run == marker["run"] else COPIED_NO_SNAPSHOT


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            got = json.load(fh)
        return got if isinstance(got, dict) else None
    except (OSError, ValueError):
        return None


def _marker(root: str) -> dict | None:
    path = os.path.join(root, MARKER)
    try:
        st = os.stat(path)
        with open(path) as fh:
            run = fh.read().strip()
    except OSError:
        return None
    return {"run": run, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}


def recover(root: str) -> str:
    """Before the store opens: put the snapshot in place of live files copied while the node ran.

    Returns the case found (``classify``).
    """
    snap = os.path.join(root, SNAPSHOT_DIR)
    info = _read_json(os.path.join(snap, INFO))
    have_snapshot = info is not None and os.path.exists(os.path.join(snap, DB_FILE))
    case = classify(_marker(root), _read_json(os.path.join(root, STAMP)),
                    info.get("run") if have_snapshot and info else None)
    if case == COPIED_NO_SNAPSHOT:
        log.error("the data directory %s was copied while its node ran, without a snapshot of that run "
                  "(POST /cluster/snapshot before copying); trying its live files, which may be torn", root)
    if case != COPIED:
        return case
    log.warning("the data directory %s was copied while its node ran: restoring the snapshot of %s "
                "(write-ahead log position %s); replication brings this node up to date", root,
                info.get("created_at"), info.get("wal_pos"))
    for name in (DB_FILE, DB_FILE + ".wal"):
        if os.path.exists(os.path.join(root, name)):
            os.remove(os.path.join(root, name))
    shutil.rmtree(os.path.join(root, "wal"), ignore_errors=True)
    os.makedirs(os.path.join(root, "wal"))
    tmp = os.path.join(root, DB_FILE + ".restoring")
    shutil.copyfile(os.path.join(snap, DB_FILE), tmp)
    _forget_wal_position(tmp)
    _fsync(tmp)
    os.replace(tmp, os.path.join(root, DB_FILE))
    _fsync(root)
    return case


def _forget_wal_position(db: str) -> None:
    """The restored store starts a new write-ahead log: drop the old log's position."""
    import duckdb

    con = duckdb.connect(db)
    try:
        con.execute("DELETE FROM meta WHERE key = 'wal_pos'")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def mark_open(root: str) -> str:
    """Write this run's marker and its stamp (after ``recover``); returns the run id."""
    run = uuid.uuid4().hex
    path = os.path.join(root, MARKER)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(run)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    st = os.stat(path)
    stamp = os.path.join(root, STAMP)
    with open(stamp + ".tmp", "w") as fh:
        json.dump({"run": run, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(stamp + ".tmp", stamp)
    _fsync(root)
    return run


def mark_closed(root: str) -> None:
    """A clean close: the live files are whole again."""
    for name in (MARKER, STAMP):
        try:
            os.remove(os.path.join(root, name))
        except FileNotFoundError:
            pass


def take(store: Store) -> dict:
    """Write ``<root>/snapshot/`` (a consistent DuckDB copy of the store and ``info.json``); returns the info.

    The copy is one read transaction over every table, run in the store's threadpool
    once DuckDB holds every durable write; writes go on meanwhile.
    """
    root = store.root
    run = store.run_id
    return store.query(lambda cur: _write(cur, root, run))


def _write(cur, root: str, run: str) -> dict:
    from mesh.storage.store import COLUMNS

    started = time.monotonic()
    tmp = os.path.join(root, SNAPSHOT_DIR + ".tmp")
    final = os.path.join(root, SNAPSHOT_DIR)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    target = os.path.join(tmp, DB_FILE)
    main = cur.execute("SELECT current_database()").fetchone()[0]
    cur.execute(f"ATTACH '{target.replace(chr(39), chr(39) * 2)}' AS skein_snapshot")
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            arch = [r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables WHERE table_catalog = ? "
                                              "AND table_name LIKE 'arch_%' ORDER BY table_name", [main]).fetchall()]
            schemas = {"hot": f"slot SMALLINT, {COLUMNS}", "snap": "slot SMALLINT, idx BIGINT, term BIGINT, data BLOB",
                       "meta": "key VARCHAR PRIMARY KEY, value VARCHAR", **{t: COLUMNS for t in arch}}
            for table, cols in schemas.items():
                cur.execute(f"CREATE TABLE skein_snapshot.{table} ({cols})")
                cur.execute(f'INSERT INTO skein_snapshot.{table} SELECT * FROM "{main}".{table}')
            rows = sum(cur.execute(f"SELECT count(*) FROM skein_snapshot.{t}").fetchone()[0] for t in schemas)
            pos = cur.execute("SELECT value FROM skein_snapshot.meta WHERE key = 'wal_pos'").fetchone()
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
    finally:
        cur.execute("DETACH skein_snapshot")
    info = {"run": run, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wal_pos": pos[0] if pos else "", "rows": rows, "tables": len(schemas), "bytes": os.path.getsize(target)}
    with open(os.path.join(tmp, INFO), "w") as fh:
        json.dump(info, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync(target)
    _fsync(tmp)
    old = os.path.join(root, SNAPSHOT_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync(root)
    shutil.rmtree(old, ignore_errors=True)
    info["seconds"] = round(time.monotonic() - started, 3)
    info["dir"] = final
    log.info("snapshot written to %s: %d rows, %d bytes, write-ahead log position %s, %.2fs", final, info["rows"],
             info["bytes"], info["wal_pos"], info["seconds"])
    return info
