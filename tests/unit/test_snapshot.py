"""`POST /cluster/snapshot`'s mechanism on a real store: a directory copied while the store runs comes
back from its snapshot; a crashed or cleanly closed one keeps its live files."""
from __future__ import annotations

import os
import shutil

import pytest

from mesh.storage import snapshot
from mesh.storage.entries import KIND_MSG
from mesh.storage.snapshot import CLEAN, COPIED, COPIED_NO_SNAPSHOT, CRASHED, classify
from mesh.storage.store import Store


def msg(idx, term=1):
    return (idx, term, KIND_MSG, ["c1", 2, idx, 1000 + idx, "u1", f"cmn{idx}", 1700000000 + idx, 2, 0, 0, "",
                                  b"payload%d" % idx])


def opened(root: str) -> Store:
    s = Store(root, commit_interval=0.001)
    s.open()
    return s


def test_classify():
    m = {"run": "r1", "ino": 5, "ctime_ns": 10}
    assert classify(None, None, "r1") == CLEAN
    assert classify(m, dict(m), "r1") == CRASHED
    assert classify(m, dict(m), None) == CRASHED
    assert classify(m, {**m, "ctime_ns": 9}, "r1") == COPIED
    assert classify(m, {**m, "ino": 6}, "r1") == COPIED
    assert classify(m, None, "r1") == COPIED
    assert classify(m, {**m, "ctime_ns": 9}, "r0") == COPIED_NO_SNAPSHOT
    assert classify(m, {**m, "ctime_ns": 9}, None) == COPIED_NO_SNAPSHOT


def test_copy_taken_while_running_comes_back_from_the_snapshot(tmp_path):
    live = str(tmp_path / "live")
    s = opened(live)
    s.append(1, [msg(i) for i in range(1, 101)])
    s.put_meta("hard/1", "3:2")
    s.archived_slots()
    s.compact(1, 50)
    info = snapshot.take(s)
    assert info["run"] == s.run_id and info["rows"] > 0 and os.path.isdir(os.path.join(live, "snapshot"))
    s.append(1, [msg(i) for i in range(101, 151)])  # after the snapshot, before the copy
    copy = str(tmp_path / "copy")
    shutil.copytree(live, copy)  # while the store runs
    s.append(1, [msg(i) for i in range(151, 161)])
    s.close()
    assert not os.path.exists(os.path.join(live, snapshot.MARKER))  # a clean close

    c = opened(copy)
    try:
        assert c.last_entry(1) == (100, 1)  # exactly the snapshot: its archive, its hot rows, its meta
        assert [e[0] for e in c.read_entries(1, 1, 200)] == list(range(1, 101))
        assert c.load_hard_state(1) == (3, 2)
        c.append(1, [msg(101, term=2)])  # and it goes on with a new write-ahead log
        assert c.last_entry(1) == (101, 2)
    finally:
        c.close()
    c = opened(copy)  # a clean restart of the restored copy keeps what it wrote
    try:
        assert c.last_entry(1) == (101, 2)
    finally:
        c.close()

    s = opened(live)  # the original, cleanly closed, keeps everything
    try:
        assert s.last_entry(1) == (160, 1)
    finally:
        s.close()


def test_crashed_store_keeps_its_live_files(tmp_path, monkeypatch):
    live = str(tmp_path / "live")
    s = opened(live)
    s.append(1, [msg(i) for i in range(1, 11)])
    snapshot.take(s)
    s.append(1, [msg(i) for i in range(11, 21)])
    monkeypatch.setattr(snapshot, "mark_closed", lambda root: None)  # dies without a clean close
    s.close()
    monkeypatch.undo()
    assert os.path.exists(os.path.join(live, snapshot.MARKER))
    s = opened(live)
    try:
        assert s.last_entry(1) == (20, 1)
    finally:
        s.close()


@pytest.mark.parametrize("with_snapshot", [False, True])
def test_copy_without_a_snapshot_of_that_run_uses_the_live_files(tmp_path, with_snapshot):
    live = str(tmp_path / "live")
    s = opened(live)
    s.append(1, [msg(i) for i in range(1, 11)])
    if with_snapshot:
        snapshot.take(s)
    s.close()
    s = opened(live)  # a new run: the snapshot (if any) belongs to the previous one
    s.append(1, [msg(i) for i in range(11, 21)])
    s._sync_duck()
    copy = str(tmp_path / "copy")
    shutil.copytree(live, copy)
    s.close()
    c = opened(copy)
    try:
        assert c.last_entry(1) == (20, 1)
    finally:
        c.close()
