"""The node: composes every part of one Skein process and runs its lifecycle.

Start order: Redis health loop; ZeroMQ ROUTER/PUB bound (so peers can reach us, and a
duplicate node id can be detected by pinging the registered address); etcd client and
the cluster view (one watch on the cluster prefix); the local store opened; membership
(join under a lease); replication (slot roles from the table), controller campaign;
the client gateway, presence, webhooks; client listeners and HTTP servers.

Stop order on SIGTERM (``graceful_stop``): ``/health`` turns 503 (the load balancer
stops sending), the node asks the controller to move its slot leaderships away and
waits for it, client connections are closed, the lease is revoked (the node leaves
every view at once), the store and sockets close.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import socket
import time
from collections.abc import Callable

import gevent
import gevent.event

from coordinator.cluster_view import ClusterView
from coordinator.controller import Controller
from coordinator.etcd_client import Etcd, EtcdUnavailable
from coordinator.membership import Membership
from coordinator.presence import Presence
from coordinator.redis_client import RedisConn
from mesh.base import loop_lag, metrics
from mesh.base.config import Config, split_hostport
from mesh.net import curve, wire
from mesh.net.transport import Mesh, MeshError, PeerAddr, Refused
from mesh.slots.router import SlotRouter, SlotUnavailable
from mesh.slots.service import SlotService

log = logging.getLogger("mesh.node")

VERSION = "0.1.0"
START_GATE_MAX = 60.0  # seconds after the start when /health stops waiting for every slot's leader


class Node:
    version = VERSION

    def __init__(self, cfg: Config, *, serve_http: bool = True) -> None:
        self.cfg = cfg
        self.node_id: int = cfg.node_id
        self.serve_http = serve_http
        self.started_at = time.time()
        self.draining = False
        self.stopping = False
        self.ready_event = gevent.event.Event()
        self.servers: list = []
        self._stop_hooks: list[Callable[[], None]] = []
        self._health_checks: list[Callable[[], list[str]]] = []
        self._members_seen: set[int] = set()
        self.served_once = False  # /health has been 200 once (the start gate below is passed)
        os.makedirs(cfg["rootDir"], exist_ok=True)

        self.redis = RedisConn(cfg["redis.url"], password=cfg["redis.password"], ca_file=cfg["redis.caFile"],
                               timeout=cfg["redis.timeout"])
        self.mesh = Mesh(self.node_id, cfg["cluster.serverAddr"], cfg["cluster.pubAddr"],
                         hwm=cfg["cluster.pubHwm"], replay_size=cfg["cluster.pubReplayBuffer"],
                         request_timeout=cfg["cluster.requestTimeout"],
                         heartbeat_interval=cfg["cluster.heartbeatInterval"],
                         curve=curve.keys(cfg["cluster.curvePublicKey"], cfg["cluster.curveSecretKey"]))
        self.etcd: Etcd | None = None
        self.view: ClusterView | None = None
        self.membership: Membership | None = None
        self.controller: Controller | None = None
        self.router = SlotRouter(self)
        self.slot_service = SlotService(self)
        self._init_services()

    def _init_services(self) -> None:
        """The data services and the client gateway (no I/O until start())."""
        from gateway.gateway import Gateway
        from mesh.im import channels, cmd, conversations, events, history, person_perms, system_uids, users
        from mesh.im.messages import Messages
        from mesh.im.online_status import OnlineStatus
        from mesh.im.send_batches import SendBatches
        from mesh.im.send_batches import register as register_send_batches
        from mesh.im.webhooks import Webhooks
        from mesh.replication.manager import Replication

        svc = self.slot_service
        self.replication = Replication(self)
        users.register(svc)
        person_perms.register(svc)
        channels.register(svc)
        conversations.register(svc)
        cmd.register(svc)
        system_uids.register(svc)
        deltas = events.register(svc, self)
        register_send_batches(svc, self)
        self.recent = history.RecentCache()
        history.register(svc, self.recent, deltas)
        self.users = users.Users(self.router)
        self.person_perms = person_perms.PersonPerms(self)
        self.channels = channels.Channels(self)
        self.conversations = conversations.Conversations(self)
        self.system_uids = system_uids.SystemUids(self)
        self.cmd = cmd.CmdSync(self)
        self.messages = Messages(self)
        self.webhooks = Webhooks(self)
        self.online_status = OnlineStatus(self)
        self.online_status.register(svc)
        self.send_batches = SendBatches(self)
        self.presence = Presence(self.redis, self.cfg["cluster.name"], self.node_id, snapshot=self._presence_snapshot)
        self.replication.apply_hook = self._on_commit
        self.replication.ready_hook = self.messages.on_leader_ready
        authenticator = users.TokenAuthenticator(self.users, self.cfg["tokenAuthOn"])
        self.gateway = Gateway(self.node_id, self.cfg, authenticator, self.messages,
                               publish=self.mesh.publish_remote)
        self.gateway.online_listeners.append(self._on_online)
        from api.rate_limit import HttpSendLimits
        from coordinator.rate_counts import RateCounts
        self.rate_counts = RateCounts(self.redis, self.cfg["cluster.name"], self.cfg["limits.syncInterval"])
        self.rate_counts.add("uid", self.gateway.uid_limiter)
        self.http_limits = HttpSendLimits(self.cfg, self.rate_counts)
        self.add_health_check(self._overload_reasons)
        self.on_stop(self.rate_counts.stop)
        self.gateway.on_sync_once_ack = lambda uid, sid, ctype, seq: gevent.spawn(self.cmd.read, uid, sid, ctype, seq)
        self.mesh.subscribe(wire.GW_LOGIN, lambda _s, login: self.gateway.apply_login(login))
        self.mesh.subscribe(wire.GW_KICK, self._on_kick)
        self.mesh.subscribe(wire.EVT_DELIVER, lambda _s, item: self.deliver_event(item))
        self.add_health_check(self.replication.health_reasons)
        self.on_stop(self.gateway.stop)

    # ------------------------------------------------------------------ glue
    def _on_commit(self, replica, entry, meta) -> None:
        self.recent.add(replica.slot, entry[3])
        self.messages.on_commit(replica, entry, meta)

    def deliver_event(self, item: list) -> None:
        """A message event (``evt.deliver``) to this node's sessions of its recipients."""
        uids, event_id, event_type, ts, data = item
        self.gateway.deliver_event(uids, event_id, event_type, ts, data)

    def _on_online(self, session, online: bool) -> None:
        if online:
            self.presence.online(session.uid, session.conn_id, session.device_flag, session.device_level)
        else:
            self.presence.offline(session.uid, session.conn_id)
        if self.webhooks.enabled:
            local = self.gateway.local_sessions(session.uid)
            flag_count = sum(1 for s in local if s.device_flag == session.device_flag)
            self.online_status.changed(session.uid, session.device_flag, online, session.conn_id, flag_count,
                                       len(local))

    def _presence_snapshot(self):
        now = int(time.time())
        for s in self.gateway.all_sessions():
            if s.uid:
                yield s.uid, s.conn_id, s.device_flag, s.device_level, now

    def call_or_503(self, fn, *args):
        """Run a slot call for an HTTP handler; a slot without a leader becomes 503 retry required."""
        import falcon

        from mesh.slots.router import SlotCallError

        try:
            return fn(*args)
        except SlotUnavailable as exc:
            log.warning("request failed, slot unavailable: %s", exc)
            raise falcon.HTTPServiceUnavailable(title="retry required", description=str(exc)) from None
        except SlotCallError as exc:
            log.error("slot call failed: %s", exc)
            raise falcon.HTTPServiceUnavailable(title="retry required", description=str(exc)) from None

    def broadcast_kick(self, uid: str, device_flags, delay: float, text: str) -> None:
        """DISCONNECT 12 to a uid's connections of these device flags on every node."""
        self.gateway.kick_uid(uid, device_flags, delay, text)
        flags = list(device_flags) if device_flags is not None else None
        self.mesh.publish_remote(wire.GW_KICK, wire.Kick(uid, flags, delay, text))

    def _on_kick(self, _sender: int, payload: list) -> None:
        k = wire.Kick(*payload)
        self.gateway.kick_uid(k.uid, k.device_flags, k.delay, k.text)

    # ------------------------------------------------------------------ info
    def member_info(self) -> dict:
        c = self.cfg
        return {
            "id": self.node_id,
            "serverAddr": c["cluster.serverAddr"],
            "pubAddr": c["cluster.pubAddr"],
            "apiUrl": c["external.apiUrl"],
            "tcpAddr": c["external.tcpAddr"],
            "wsAddr": c["external.wsAddr"],
            "wssAddr": c["external.wssAddr"],
            "intranetTcpAddr": c["intranet.tcpAddr"],
            "managerAddr": c["manager.addr"],
            "instance": self.mesh.instance,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "version": VERSION,
        }

    def health(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        if self.draining or self.stopping:
            reasons.append("draining")
        m = self.membership
        if m is None or not m.registered:
            reasons.append("not joined to the cluster")
        elif not m.session_alive:
            reasons.append("etcd session lost")
        if not self.redis.up:
            reasons.append(f"redis unreachable ({self.redis.last_error or 'no answer'})")
        if self.view is not None and self.view.table is None:
            reasons.append("no slot table yet")
        live = len(self.view.members) if self.view else 0
        need = self.cfg["cluster.minimumNodes"]
        if live < need:
            reasons.append(f"{live} live member(s), cluster.minimumNodes is {need}")
        for check in self._health_checks:
            try:
                reasons.extend(check())
            except Exception as exc:
                reasons.append(f"health check failed: {exc}")
        if not self.served_once and not reasons:
            gate = self._start_gate()
            if gate and time.time() - self.started_at > START_GATE_MAX:
                log.warning("serving although the start gate is not passed after %.0fs: %s", START_GATE_MAX,
                            "; ".join(gate))
                gate = []
            reasons.extend(gate)
            if not reasons:
                self.served_once = True
                log.info("ready: every slot has a ready leader and every member answers over the mesh")
        ok = not reasons
        metrics.node_healthy.set(1 if ok else 0)
        return ok, reasons

    def _overload_reasons(self) -> list[str]:
        """Overloaded: the event loop ran, on average over the last seconds, later than ``health.maxLoopLag``."""
        lag = loop_lag.recent_lag()
        limit = self.cfg["health.maxLoopLag"]
        if lag > limit:
            return [f"overloaded: the event loop runs {lag:.2f}s late on average (health.maxLoopLag {limit:g}s)"]
        return []

    def _start_gate(self) -> list[str]:
        """Until the node is first ready: it turns healthy only once API calls and sends can work.

        Right after a start the slot leaders are still recovering (and the controller moves
        leaderships as nodes join); a call then would wait on them and could time out.
        Later, one slot failing over must not take every node out of the load balancer, so
        this is checked only until the first 200, and for at most ``START_GATE_MAX`` seconds.
        """
        reasons = []
        unserved = self.view.unserved_slots() if self.view is not None else []
        if unserved:
            reasons.append(f"waiting for {len(unserved)} slot(s) to have a ready leader: {unserved[:8]}")
        unheard = sorted(n for n in (self.view.members if self.view else ()) if not self.mesh.ever_heard(n))
        if unheard:
            reasons.append(f"not heard over the mesh yet from node(s) {unheard}")
        return reasons

    def add_health_check(self, fn: Callable[[], list[str]]) -> None:
        self._health_checks.append(fn)

    def on_stop(self, fn: Callable[[], None]) -> None:
        self._stop_hooks.append(fn)

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        cfg = self.cfg
        metrics.node_info.labels(str(self.node_id), VERSION).set(1)
        log.info("starting node: config=%s", json.dumps(cfg.redacted(), default=str, sort_keys=True))
        if cfg.unknown:
            log.warning("unknown config keys ignored: %s", ", ".join(cfg.unknown))
        for key, why in cfg.ignored:
            log.warning("config key %s accepted for WuKongIM compatibility and ignored: %s", key, why)
        loop_lag.start()
        self.redis.start()
        self.mesh.bind()
        self.mesh.start()
        self.etcd = Etcd(cfg["etcd.endpoints"], prefix=f"/skein/{cfg['cluster.name']}/",
                         timeout=cfg["etcd.timeout"], username=cfg["etcd.username"],
                         password=cfg["etcd.password"], ca_file=cfg["etcd.caFile"],
                         cert_file=cfg["etcd.certFile"], key_file=cfg["etcd.keyFile"])
        self.view = ClusterView(self.etcd)
        self.view.listen(self._on_view)
        self.view.start()
        if not self.view.wait_loaded(timeout=30):
            raise EtcdUnavailable(f"could not read the cluster state from etcd at {cfg['etcd.endpoints']}")
        self.replication.open()
        self.membership = Membership(self.etcd, self.node_id, self.member_info(),
                                     ttl=cfg["cluster.leaseTTL"], heartbeat=cfg["cluster.heartbeatInterval"],
                                     probe=lambda info: self.mesh.probe(info.get("serverAddr", ""), timeout=1.0),
                                     instance=self.mesh.instance)
        self.membership.join()
        self.membership.start()
        self.controller = Controller(self.etcd, self.view, self.membership, self.node_id,
                                     slot_count=cfg["cluster.slotCount"], replica_count=cfg["cluster.replicaCount"],
                                     positions=self.replication.positions, reachable=self.mesh.ever_heard,
                                     holdings=self.replication.holdings)
        self.mesh.handle(wire.TRANSFER_CONTROLLER, self._on_transfer_controller)
        self.mesh.handle(wire.RESIGN_CONTROLLER, self._on_resign_controller)
        self.mesh.handle(wire.ELECT_SLOT, self._on_elect_slot)
        self.replication.start()
        self.controller.start()
        self.gateway.start()
        self.system_uids.start()
        self.on_stop(self.system_uids.stop)
        self.presence.start()
        self.rate_counts.start()
        self.webhooks.start()
        self.online_status.start()
        self.send_batches.start()
        self._start_listeners()
        # what exists now (modules, loaded slot states) lives as long as the process: keep it
        # out of every future full collection
        gc.freeze()
        self.ready_event.set()
        log.info("node started: api=%s tcp=%s ws=%s wss=%s proxyProtocol(tcp=%s ws=%s) manager=%s router=%s pub=%s",
                 cfg["httpAddr"], cfg["tcpAddr"], cfg["wsAddr"], cfg["wssAddr"] or "off", cfg["proxyProtocol.tcp"],
                 cfg["proxyProtocol.ws"], cfg["manager.addr"], cfg["cluster.serverAddr"], cfg["cluster.pubAddr"])

    def _on_view(self, view: ClusterView) -> None:
        peers = {}
        for pid, info in view.members.items():
            if pid == self.node_id:
                continue
            try:
                peers[pid] = PeerAddr(info["serverAddr"], info["pubAddr"])
            except KeyError:
                log.warning("member %s has no node-to-node addresses; skipping", pid)
        self.mesh.set_peers(peers)
        metrics.cluster_members.set(len(view.members))
        if self.node_id in view.draining and not self.draining and not self.stopping:
            self.draining = True
            metrics.node_draining.set(1)
            log.info("draining requested: /health now 503; client connections close in %.1fs; slots move away",
                     self.cfg["cluster.drainDelay"])
            gevent.spawn_later(self.cfg["cluster.drainDelay"], self.gateway.drain)
        if self.draining and not self.stopping and view.table is not None and not view.table.slots_of(self.node_id):
            if not getattr(self, "_drain_done_logged", False):
                self._drain_done_logged = True
                log.info("drain complete: this node holds no slot replica; it can be stopped")
        live = set(view.members)
        gone = self._members_seen - live
        self._members_seen = live
        if gone and self.controller is not None and self.controller.is_controller:
            for dead in gone:
                gevent.spawn(self._purge_presence, dead)
        if view.table is not None:
            metrics.slot_table_version.set(view.table.version)
            metrics.slots_replicated.set(len(view.table.slots_of(self.node_id)))

    def _purge_presence(self, dead: int) -> None:
        try:
            n = self.presence.purge_node(dead)
            log.info("removed %d presence entr%s of departed node %s", n, "y" if n == 1 else "ies", dead)
        except Exception as exc:
            log.warning("could not purge presence of node %s: %s", dead, exc)

    def request_controller(self, method: str, payload) -> object:
        ctl = self.view.controller if self.view else None
        if ctl is None:
            return None
        try:
            return self.mesh.request(ctl, method, payload, timeout=5)
        except MeshError as exc:
            log.warning("controller request %s failed: %s", method, exc)
            return None

    def _on_transfer_controller(self, sender: int, target) -> bool:
        if not self.controller.is_controller:
            raise Refused("not_controller", self.view.controller)
        return self.controller.transfer(int(target))

    def _on_resign_controller(self, sender: int, _payload) -> bool:
        if not self.controller.is_controller:
            raise Refused("not_controller", self.view.controller)
        return self.controller.resign()

    def _on_elect_slot(self, sender: int, payload) -> dict:
        if not self.controller.is_controller:
            raise Refused("not_controller", self.view.controller)
        slot, away_from = payload
        return self.controller.move_slot_leader(int(slot), int(away_from))

    # ------------------------------------------------------------------ listeners
    def _start_listeners(self) -> None:
        """TCP, ``wsAddr`` and ``wssAddr`` always (the node reads WebSocket itself, under gunicorn
        too: ``gateway.ws_listener``); the HTTP ports when there is no gunicorn."""
        from gateway.listeners import start_tcp_listener
        from gateway.ws_listener import start_ws_server, tls_context

        cfg = self.cfg
        self.servers.append(start_tcp_listener(self))
        proxied = cfg["proxyProtocol.ws"]
        proxy_timeout = cfg["proxyProtocol.timeout"] if proxied else None
        if cfg["wssAddr"]:
            tls = tls_context(cfg["wssConfig.certFile"], cfg["wssConfig.keyFile"])
            self.servers.append(start_ws_server(cfg["wssAddr"], self.gateway, proxied, proxy_timeout, tls))
        self.servers.append(start_ws_server(cfg["wsAddr"], self.gateway, proxied, proxy_timeout))
        if self.serve_http:
            from gevent.pywsgi import WSGIServer

            from api.app import create_apps

            for addr, app in create_apps(self):
                host, port = split_hostport(addr)
                server = WSGIServer((host, port), app, backlog=4096, log=None,
                                    error_log=logging.getLogger("api.wsgi"))
                server.start()
                self.servers.append(server)

    # ------------------------------------------------------------------ stop
    def hand_over(self, deadline: float) -> None:
        """Ask the controller to move this node's slot leaderships away, and wait for it."""
        m = self.membership
        self.etcd.put(self.etcd.key("stepdown", self.node_id), "1", lease=m.lease)
        while time.time() < deadline:
            table = self.view.table
            if table is None or not table.slots_led_by(self.node_id) or len(self.view.members) < 2:
                break
            gevent.sleep(0.1)
        left = len(self.view.table.slots_led_by(self.node_id)) if self.view.table else 0
        log.info("hand-over done: %d slot(s) still led here", left)

    def graceful_stop(self, timeout: float = 20.0) -> None:
        """Drain: health 503, hand slots over, close clients, leave etcd, close the store and sockets."""
        if self.stopping:
            return
        self.stopping = True
        self.draining = True
        metrics.node_draining.set(1)
        started = time.time()
        log.info("graceful stop: /health now 503; draining for %.1fs", self.cfg["cluster.drainDelay"])
        gevent.sleep(self.cfg["cluster.drainDelay"])
        if self.membership is not None and self.membership.session_alive:
            try:
                self.hand_over(deadline=started + timeout * 0.6)
            except EtcdUnavailable as exc:
                log.warning("slot hand-over skipped (%s); the controller reassigns after the lease expires", exc)
            except Exception:
                log.exception("slot hand-over failed; the controller reassigns after the lease expires")
        for hook in self._stop_hooks:
            try:
                hook()
            except Exception:
                log.exception("stop hook failed")
        for server in self.servers:
            try:
                server.close()
            except Exception:
                pass
        if self.controller is not None:
            self.controller.stop()
        if self.membership is not None:
            self.membership.leave()
        self.close()
        log.info("stopped after %.1fs", time.time() - started)

    def close(self) -> None:
        for part in (self.send_batches.stop, self.online_status.stop, self.webhooks.stop, self.presence.stop,
                     self.replication.stop):
            try:
                part()
            except Exception:
                log.exception("shutdown step failed")
        if self.view is not None:
            self.view.stop()
        self.redis.stop()
        try:
            self.mesh.close()
        except Exception:
            pass
        if self.etcd is not None:
            self.etcd.close()
