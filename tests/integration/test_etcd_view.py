"""The etcd view against a real etcd: monotonic by revision, and the controller re-reads after a lost race.

A full re-read of the prefix (the periodic resync, or the read that restarts a watch)
must never put back values older than watch events already applied, and a controller
whose compare-and-swap fails must read the table again and retry instead of waiting
for the next periodic resync.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import types

import gevent
import pytest

from coordinator.cluster_view import ClusterView
from coordinator.controller import Controller
from coordinator.etcd_client import Etcd, PrefixCache
from coordinator.slot_table import SlotTable, plan
from tests.support.servers import EtcdServer

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def etcd_server():
    base = tempfile.mkdtemp(prefix="skein-etcd-view-")
    server = EtcdServer(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def etcd(etcd_server, request):
    client = Etcd([etcd_server.endpoint], prefix=f"/skein/{request.node.name}/")
    yield client
    client.close()


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        gevent.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_full_reread_never_overwrites_newer_watch_events(etcd):
    """A resync whose read was taken before a watch event must not roll the view back."""
    key = etcd.key("v")
    etcd.put(key, "1")
    seen: list[int] = []
    cache = PrefixCache(etcd, etcd.prefix, lambda items: seen.append(int(items[key])) if key in items else None,
                        resync_interval=3600)
    read_taken = gevent.event.Event()
    release = gevent.event.Event()
    real_get_prefix = etcd.get_prefix
    slow = {"on": False}

    def get_prefix(prefix):
        result = real_get_prefix(prefix)
        if slow["on"]:  # the read is taken; it comes back only after newer events were watched
            read_taken.set()
            release.wait(10)
        return result

    etcd.get_prefix = get_prefix
    cache.start()
    try:
        assert cache.loaded.wait(10)
        wait_for(lambda: seen and seen[-1] == 1, 5, "the first value")
        slow["on"] = True
        resync = gevent.spawn(cache._load)  # the periodic full re-read, caught mid-way
        assert read_taken.wait(5)
        etcd.put(key, "2")
        wait_for(lambda: seen[-1] == 2, 5, "the watch event for v=2")
        release.set()
        resync.get(timeout=10)
        slow["on"] = False
        etcd.put(key, "3")
        wait_for(lambda: seen[-1] == 3, 5, "the watch event for v=3")
        print("values seen by the view:", seen)
        assert seen == sorted(seen), f"the view went back in time: {seen}"
        assert cache.items[key] == b"3"
    finally:
        cache.stop()


def test_watch_events_older_than_a_full_read_are_not_applied_again(etcd):
    """After a read at revision R, replayed watch events at or below R (a slow watch) change nothing."""
    key = etcd.key("k")
    etcd.put(key, "a")
    etcd.put(key, "b")
    etcd.delete(key)
    cache = PrefixCache(etcd, etcd.prefix, resync_interval=3600)
    cache._load()
    assert key not in cache.items
    rev = cache.revision
    # the events a watch started at an old revision would deliver now: put a, put b, delete
    it, cancel = etcd.watch_prefix(etcd.prefix, 1)
    events = []
    try:
        for resp in it:
            events.extend(resp.events)
            if sum(1 for e in events if e.key.decode() == key) >= 3:
                break
    finally:
        cancel()
    changed = cache._apply_events(events)
    assert not changed and key not in cache.items and cache.revision == rev


def table_with(nodes: set[int]) -> SlotTable:
    return plan(SlotTable.empty(8, 3), nodes, fresh=True)


def test_controller_rereads_and_retries_after_a_lost_compare_and_swap(etcd):
    """The controller's view of the table is stale: the swap fails, it reads again and writes."""
    lease = etcd.grant(30)
    for n in (1, 2):
        etcd.put(etcd.key("members", n), json.dumps({"id": n}), lease=lease)
    etcd.put(etcd.key("controller"), "1", lease=lease)
    t0 = table_with({1})
    etcd.put(etcd.key("slots"), t0.to_bytes())
    view = ClusterView(etcd)
    view.start()
    assert view.wait_loaded(10)
    wait_for(lambda: view.table is not None and view.table.version == t0.version and len(view.members) == 2, 5,
             "the view to load")
    view.stop()  # its watch is gone: from now on the view is stale unless someone re-reads it
    newer = SlotTable.from_bytes(t0.to_bytes())
    newer.version = t0.version + 1
    etcd.put(etcd.key("slots"), newer.to_bytes())  # another writer won the race
    membership = types.SimpleNamespace(session_alive=True, lease=lease, on_session_change=lambda fn: None)
    ctl = Controller(etcd, view, membership, 1, slot_count=8, replica_count=3)
    ctl.start()
    try:
        def written():
            raw, _ = etcd.get(etcd.key("slots"))
            t = SlotTable.from_bytes(raw)
            return t.version > newer.version and any(2 in s.members() for s in t.slots)
        wait_for(written, 8, "the controller to write a table placing node 2 over the newer table")
    finally:
        ctl.stop()
        etcd.revoke(lease)


def test_a_view_ahead_of_etcd_follows_etcd_when_the_watch_restarts(etcd):
    """etcd went back in time (data lost, restored from a backup): the view must not freeze."""
    key = etcd.key("w")
    etcd.put(key, "1")
    cache = PrefixCache(etcd, etcd.prefix, resync_interval=0.2)
    cache.start()
    try:
        assert cache.loaded.wait(10)
        wait_for(lambda: cache.items.get(key) == b"1", 5, "the first value")
        cache.revision = cache._base_revision = 10**9  # the view came from an etcd that has since lost its data
        gevent.sleep(0.5)  # periodic re-reads are older than the view: dropped
        assert cache.items.get(key) == b"1"
        cache._cancel()  # the watch breaks (as it does when etcd restarts); its restart takes etcd as it is
        wait_for(lambda: cache.revision < 10**9, 5, "the view to follow etcd again")
        etcd.put(key, "2")
        wait_for(lambda: cache.items.get(key) == b"2", 5, "the next change")
    finally:
        cache.stop()
