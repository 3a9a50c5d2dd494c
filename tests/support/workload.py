"""A steady chat workload against a live cluster, and the checker of what it left behind.

``Workload`` registers users, creates groups, connects one client per user (spread over
the live nodes), and sends 1:1 and group messages at a fixed total rate. Every send is
retried with the same ``client_msg_no`` and payload until it is acknowledged: after a
retryable SENDACK (15), a timeout or a dropped connection (then the client reconnects to
a live node, as a load balancer would send it, and syncs what it missed). It records
every acknowledged message, every message each client received, every non-retryable
refusal, and the longest time each channel refused writes.

``check()`` waits until every replica has applied what its leader committed, reads the
applied log of every replica of every slot, and reports:

* ``acked``: messages that got a successful SENDACK;
* ``lost``: acknowledged messages missing (or different) on some replica of their slot;
* ``duplicated``: ``client_msg_no`` stored more than once in a channel;
* ``gaps``: channels whose seqs are not exactly 1..n;
* ``divergent``: replicas whose applied logs differ from another replica's;
* ``undelivered``: (recipient, message) pairs the recipient neither received live nor
  got by its reconnect sync;
* ``longest_refusal_s``: the longest any send took from its first attempt to its
  SENDACK (while a slot has no leader, sends wait or are refused and retried).
"""
from __future__ import annotations

import base64
import json
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import gevent
import gevent.lock

from gateway import wkproto as wk
from gateway.client import ClientError, WKClient
from mesh.im.channel_rules import fake_channel_id
from tests.support.servers import Cluster, http, wait_until

log = logging.getLogger("workload")


@dataclass
class Acked:
    channel: tuple[str, int]  # stored id, type
    seq: int
    mid: int
    cmn: str
    sender: str
    payload: bytes


@dataclass
class Member:
    uid: str
    client: WKClient | None = None
    node: int = 0
    received: dict = field(default_factory=lambda: defaultdict(set))  # channel -> {seq}
    reconnects: int = 0
    lock: gevent.lock.Semaphore = field(default_factory=gevent.lock.Semaphore)


class Workload:
    def __init__(self, cluster, *, pairs: int = 4, groups: int = 2, group_size: int = 4, rate: float = 40.0,
                 tag: str | None = None, send_timeout: float = 8.0) -> None:
        self.cluster = cluster
        self.tag = tag or uuid.uuid4().hex[:6]
        self.rate = rate
        self.send_timeout = send_timeout
        self.members: dict[str, Member] = {}
        self.person: list[tuple[str, str]] = []
        self.groups: dict[str, list[str]] = {}
        for i in range(pairs):
            a, b = f"w{self.tag}p{i}a", f"w{self.tag}p{i}b"
            self.person.append((a, b))
            self.members[a] = Member(a)
            self.members[b] = Member(b)
        for g in range(groups):
            gid = f"w{self.tag}g{g}"
            uids = [f"w{self.tag}g{g}m{j}" for j in range(group_size)]
            self.groups[gid] = uids
            for u in uids:
                self.members[u] = Member(u)
        self.acked: dict[str, Acked] = {}
        self.errors: list[tuple[str, int]] = []  # (sender, reason) of non-retryable refusals
        self.retries = 0
        self.refusals: dict[tuple, float] = {}  # channel -> first failure time of the current outage
        self.longest_refusal = 0.0
        self.longest_refusal_channel = None
        self._running = False
        self._watching = True
        self._greenlets: list[gevent.Greenlet] = []
        self.max_send_seconds = 0.0

    # ------------------------------------------------------------------ set-up
    def _api(self) -> str:
        nodes = self.cluster.live_nodes()
        return random.choice(nodes).api

    def _post(self, path: str, body) -> dict:
        def ok():
            code, resp = http("POST", self._api() + path, body, timeout=10)
            return resp if code == 200 else None
        return wait_until(ok, 60, interval=0.3, what=f"POST {path}")

    def setup(self) -> None:
        for uid in self.members:
            self._post("/user/token", {"uid": uid, "token": "t-" + uid, "device_flag": 1, "device_level": 0})
        for gid, uids in self.groups.items():
            self._post("/channel", {"channel_id": gid, "channel_type": 2, "subscribers": uids})
        for m in self.members.values():
            self._connect(m)

    def _connect(self, m: Member, avoid: int | None = None) -> None:
        while True:
            nodes = [n for n in self.cluster.live_nodes() if n.node_id != avoid] or self.cluster.live_nodes()
            node = random.choice(nodes)
            c = WKClient(f"{node.host}:{node.ports['tcp']}", m.uid, "t-" + m.uid, timeout=self.send_timeout)
            c.on_message = lambda p, m=m: self._on_recv(m, p)
            try:
                c.connect()
            except (ClientError, OSError) as exc:
                log.info("connect %s to node %s failed: %s", m.uid, node.node_id, exc)
                c.close()
                gevent.sleep(0.3)
                continue
            m.client = c
            m.node = node.node_id
            gevent.spawn(self._watch, m, c)
            return

    def _watch(self, m: Member, c: WKClient) -> None:
        """A receiver whose connection drops reconnects at once (its node died) and syncs."""
        c.closed.wait()
        if self._watching and m.client is c:
            gevent.sleep(random.uniform(0.05, 0.3))
            self._reconnect_and_sync(m)

    def _on_recv(self, m: Member, p: wk.Recv) -> None:
        if p.channel_type == 1:
            key = (fake_channel_id(m.uid, p.channel_id), 1)
        else:
            key = (p.channel_id, p.channel_type)
        m.received[key].add(p.message_seq)

    def _reconnect_and_sync(self, m: Member) -> None:
        with m.lock:
            if m.client is not None and not m.client.closed.is_set():
                return
            dead = m.node
            self._connect(m, avoid=dead)
            m.reconnects += 1
            self._sync(m)

    def _channels_of(self, uid: str) -> list[tuple[str, int, str]]:
        out = []
        for a, b in self.person:
            if uid in (a, b):
                peer = b if uid == a else a
                out.append((fake_channel_id(a, b), 1, peer))
        for gid, uids in self.groups.items():
            if uid in uids:
                out.append((gid, 2, gid))
        return out

    def _sync(self, m: Member) -> None:
        """What a reconnecting client does: pull every message it has not seen, by seq."""
        for sid, ctype, addressed in self._channels_of(m.uid):
            start = 1
            while True:
                body = {"login_uid": m.uid, "channel_id": addressed, "channel_type": ctype,
                        "start_message_seq": start, "end_message_seq": 0, "limit": 1000, "pull_mode": 1}
                resp = self._post("/channel/messagesync", body)
                for msg in resp["messages"]:
                    m.received[(sid, ctype)].add(msg["message_seq"])
                if not resp["more"] or not resp["messages"]:
                    break
                start = resp["messages"][-1]["message_seq"] + 1

    # ------------------------------------------------------------------ load
    def start(self) -> None:
        self._running = True
        senders = []
        for a, b in self.person:
            senders.append((a, b, 1))
            senders.append((b, a, 1))
        for gid, uids in self.groups.items():
            for u in uids[:2]:
                senders.append((u, gid, 2))
        per_sender = self.rate / len(senders)
        self._greenlets = [gevent.spawn(self._sender, s, ch, ct, per_sender) for s, ch, ct in senders]

    def _sender(self, uid: str, channel_id: str, ctype: int, rate: float) -> None:
        m = self.members[uid]
        key = (fake_channel_id(uid, channel_id), 1) if ctype == 1 else (channel_id, ctype)
        n = 0
        while self._running:
            t0 = time.monotonic()
            n += 1
            cmn = f"{uid}-{n}-{uuid.uuid4().hex[:8]}"
            payload = json.dumps({"type": 1, "content": f"{uid} {n}"}).encode()
            self._send_until_acked(m, key, channel_id, ctype, cmn, payload)
            gevent.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t0)) * random.uniform(0.5, 1.5))

    def _send_until_acked(self, m: Member, key, channel_id: str, ctype: int, cmn: str, payload: bytes) -> None:
        started = time.monotonic()
        deadline = started + 120
        while time.monotonic() < deadline:
            c = m.client
            if c is None or c.closed.is_set():
                self._reconnect_and_sync(m)
                continue
            try:
                ack = c.send(channel_id, ctype, payload, client_msg_no=cmn, timeout=self.send_timeout)
            except ClientError:
                self._refused(key)
                self.retries += 1
                if c.closed.is_set():
                    self._reconnect_and_sync(m)
                continue
            if ack.reason_code == wk.REASON_SUCCESS:
                self._accepted(key, time.monotonic() - started)
                prev = self.acked.get(cmn)
                if prev is not None and (prev.mid, prev.seq) != (ack.message_id, ack.message_seq):
                    self.errors.append((m.uid, -2))  # a retry answered with another id: not deduplicated
                self.acked[cmn] = Acked(key, ack.message_seq, ack.message_id, cmn, m.uid, payload)
                return
            if ack.reason_code == wk.REASON_SYSTEM_ERROR:
                self._refused(key)
                self.retries += 1
                gevent.sleep(0.1)
                continue
            self.errors.append((m.uid, ack.reason_code))
            return
        self.errors.append((m.uid, -1))  # never acknowledged within two minutes

    def _refused(self, key) -> None:
        self.refusals.setdefault(key, time.monotonic())

    def _accepted(self, key, took: float) -> None:
        """``took``: from the first attempt to the SENDACK (includes waits for a new leader)."""
        self.refusals.pop(key, None)
        if took > self.longest_refusal:
            self.longest_refusal = took
            self.longest_refusal_channel = key

    def stop(self) -> None:
        self._running = False
        gevent.joinall(self._greenlets, timeout=150)

    def close(self) -> None:
        self._watching = False
        for m in self.members.values():
            if m.client is not None:
                m.client.close()

    def drop_clients_of(self, node_id: int) -> None:
        """Clients of a killed node notice at once (their sockets were reset)."""
        for m in self.members.values():
            if m.node == node_id and m.client is not None:
                m.client.close()

    # ------------------------------------------------------------------ checking
    def check(self, settle: float = 60.0) -> dict:
        cluster = self.cluster
        live = cluster.live_nodes()
        any_node = live[0]

        def converged():
            http("POST", any_node.api + "/cluster/sync/force", {}, timeout=5)
            for n in live:
                code, body = http("GET", n.api + "/cluster/data/version", timeout=10)
                if code != 200:
                    return False
                for s in body["slots"]:
                    if s["local_applied"] is not None and s["commit_index"] is not None \
                            and s["local_applied"] < s["commit_index"]:
                        return False
            return True
        wait_until(converged, settle, interval=0.5, what="every replica applied its leader's commit index")
        gevent.sleep(1.0)  # in-flight deliveries
        table = http("GET", any_node.api + "/cluster/slots")[1]
        replicas_of = {s["id"]: [m for m in s["replicas"] + s["learners"]] for s in table["slots"]}
        by_node = {n.node_id: n for n in live}
        logs: dict[int, dict[int, list]] = defaultdict(dict)
        for slot, members in replicas_of.items():
            for nid in members:
                if nid in by_node:
                    body = http("GET", by_node[nid].api + f"/cluster/debug/slots/{slot}/entries", timeout=30)[1]
                    logs[slot][nid] = body["entries"]
        divergent = []
        self.divergent_samples = []
        for slot, per_node in logs.items():
            seqs = list(per_node.items())
            for (na, ea), (nb, eb) in zip(seqs, seqs[1:]):
                k = min(len(ea), len(eb))
                if ea[:k] != eb[:k]:
                    divergent.append((slot, na, nb))
                    i = next(i for i in range(k) if ea[i] != eb[i])
                    self.divergent_samples.append((slot, na, nb, len(ea), len(eb), ea[i][:6], eb[i][:6]))
        # channel contents, from every replica
        channels: dict[tuple, dict[int, dict]] = defaultdict(dict)  # (channel, node) -> seq -> entry
        dup = 0
        for per_node in logs.values():
            for nid, entries in per_node.items():
                seen_cmn: dict[tuple, int] = defaultdict(int)
                for e in entries:
                    if e[2] != 1:
                        continue
                    _idx, _term, _k, cid, ctype, seq, mid, frm, cmn, payload = e
                    channels[((cid, ctype), nid)][seq] = (mid, frm, cmn, base64.b64decode(payload))
                    seen_cmn[((cid, ctype), frm, cmn)] += 1
                dup = max(dup, sum(c - 1 for c in seen_cmn.values() if c > 1))
        lost = []
        slot_of = {}
        for slot, per_node in logs.items():
            for entries in per_node.values():
                for e in entries:
                    if e[2] == 1:
                        slot_of[(e[3], e[4])] = slot
        for a in self.acked.values():
            slot = slot_of.get(a.channel)
            nodes_with_slot = [nid for nid in logs.get(slot, {})] if slot is not None else []
            if not nodes_with_slot:
                lost.append(a.cmn)
                continue
            for nid in nodes_with_slot:
                got = channels.get((a.channel, nid), {}).get(a.seq)
                if got is None or got[0] != a.mid or got[2] != a.cmn or got[3] != a.payload:
                    lost.append(a.cmn)
                    break
        gaps = []
        full: dict[tuple, set] = {}
        for (ch, nid), seqmap in channels.items():
            if sorted(seqmap) != list(range(1, len(seqmap) + 1)):
                gaps.append((ch, nid))
            full[ch] = set(seqmap)
        undelivered = 0
        samples = []
        for m in self.members.values():
            for sid, ctype, _addr in self._channels_of(m.uid):
                key = (sid, ctype)
                expected = {s for (ch, _n), seqmap in channels.items() if ch == key
                            for s, v in seqmap.items() if v[1] != m.uid}
                missing = expected - m.received.get(key, set())
                undelivered += len(missing)
                if missing and len(samples) < 10:
                    samples.append((m.uid, key, sorted(missing)[:8], len(missing), m.reconnects, m.node))
        self.undelivered_samples = samples
        self.lost_samples = [(a.cmn, a.channel, a.seq, a.mid, a.sender) for a in self.acked.values()
                             if a.cmn in set(lost)][:10]
        return {"acked": len(self.acked), "lost": len(set(lost)), "duplicated": dup, "gaps": len(gaps),
                "divergent": len(divergent), "undelivered": undelivered, "errors": len(self.errors),
                "error_reasons": sorted({r for _u, r in self.errors}), "retries": self.retries,
                "reconnects": sum(m.reconnects for m in self.members.values()),
                "longest_refusal_s": round(self.longest_refusal, 2),
                "longest_refusal_channel": self.longest_refusal_channel}


@contextmanager
def cluster_under_load(nodes: int, extra: dict, gunicorn: bool = False, **load) -> Iterator[tuple[Cluster, Workload]]:
    """A started cluster with a ``Workload(**load)`` sending on it; both torn down on exit."""
    cluster = Cluster(nodes, extra=extra, gunicorn=gunicorn)
    wl = None
    try:
        cluster.start()
        wl = Workload(cluster, **load)
        wl.setup()
        wl.start()
        yield cluster, wl
    finally:
        if wl is not None:
            wl.close()
        cluster.close()
