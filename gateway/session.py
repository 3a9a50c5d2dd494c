"""One client connection: the protocol state machine, independent of TCP or WebSocket.

A session starts by sniffing its dialect (first non-space byte ``{`` = JSON-RPC, else
binary WKProto), must authenticate with CONNECT first, then handles SEND (checked,
decrypted, handed to the messaging layer; SENDACK when it answers), RECVACK, PING and
DISCONNECT. ``deliver()`` writes a RECV built for this session (its protocol version,
its person-channel view, its own encryption) and keeps it for resending until the
RECVACK comes.

Bad input closes the session cleanly: a DISCONNECT (or CONNACK during CONNECT) with a
reason code where WKProto has one, a JSON-RPC error in the JSON dialect, a counted
rejection, one log line; nothing escapes to the listener.

Writes never wait: a frame goes to the socket at once when it takes it, otherwise into
the connection's outbound buffer (``gateway.outbound``), drained by the connection's own
writer greenlet. A client whose buffer goes over ``conn.outboundMaxBytes``, whose
oldest queued frame is older than ``conn.outboundMaxDelay`` (or with more than
``conn.maxPendingFrames`` frames) gets a DISCONNECT saying so and is closed; nothing
else on the node waits for it.

Admission (the read side): while more than ``conn.maxPendingSends`` of its SENDs wait
for their outcome the session is ``paused``: the packets already decoded wait in a
backlog and the listener stops reading the socket (TCP flow control slows the client)
until half of them are answered (``on_resume`` wakes the listener, which calls
``resume()``); while the whole node has more than ``limits.nodePendingSends`` pending,
every connection waits for its previous SEND before its next one is read (fair and
bounded). A SEND over the connection's or the uid's rate (token buckets, checked by the
gateway before any decryption) gets SENDACK 22 (RateLimit); after ``REFUSED_PER_READ``
refusals the rest waits in the backlog and the listener waits (``read_delay()``, until a
token is due, 0.1-1 s) before going on, so a flooder costs little CPU; a client still
refused after ``limits.graceSeconds`` is sent DISCONNECT 22 and closed. One dispatch
handles at most ``DISPATCH_BATCH`` packets (the rest waits in the backlog the same way),
so no read holds the event loop for long.
"""
from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from typing import Any

from gateway import jsonrpc
from gateway import wkproto as wk
from gateway.outbound import MAX_BATCH_FRAMES, Outbound
from gateway.ports import DEVICE_LEVEL_MASTER, DEVICE_LEVEL_SLAVE, Delivery, SendRequest, SendResult, SessionHost
from gateway.session_crypto import (
    CryptoError,
    SessionCipher,
    derive_aes_key,
    new_server_key,
    random_salt,
    recv_sign_prefix,
)

log = logging.getLogger("gateway.session")

NEW, AUTHING, AUTHED, CLOSED = 0, 1, 2, 3
SPECIAL_CHARS = ("@", "#", "&")
MANAGER_UID = "____manager"
DISPATCH_BATCH = 256  # packets dispatched before the listener lets other greenlets run (a PING flood)
REFUSED_PER_READ = 32  # refusals after which dispatch stops and the listener waits before going on
CLOSE_LINGER = 3.0  # seconds a closed connection's last frames (DISCONNECT) may take to go out


class Session:
    __slots__ = ("gw", "transport", "conn_id", "state", "dialect", "decoder", "version", "uid", "device_flag",
                 "device_id", "device_level", "cipher", "created", "last_recv", "_out", "_writing", "_corked", "retry",
                 "in_msgs", "out_msgs", "in_bytes", "out_bytes", "in_packets", "out_packets", "close_reason",
                 "remote", "pending_sends", "paused", "backlog", "on_resume", "bucket", "offence",
                 "refused", "throttled", "rate_kicked", "__weakref__")

    def __init__(self, gw: SessionHost, transport, conn_id: int) -> None:
        self.gw = gw
        self.transport = transport
        self.conn_id = conn_id
        self.state = NEW
        self.dialect = ""  # "bin" or "json" once sniffed
        self.decoder: Any = None
        self.version = wk.LATEST_VERSION
        self.uid = ""
        self.device_flag = 0
        self.device_id = ""
        self.device_level = DEVICE_LEVEL_MASTER
        self.cipher: SessionCipher | None = None
        self.created = time.monotonic()
        self.last_recv = self.created
        self._out: Outbound | None = None  # frames the socket has not taken yet
        self._writing = False  # the writer greenlet owns the socket (it did not take everything)
        self._corked: list | None = None  # frames held while the gateway delivers a batch (one write at the end)
        self.retry: dict[int, list] | None = None  # message id -> [frame, due, count]
        self.in_msgs = self.out_msgs = self.in_bytes = self.out_bytes = 0
        self.in_packets = self.out_packets = 0
        self.close_reason = ""
        self.remote = getattr(transport, "remote", "")
        self.pending_sends = 0  # SENDs handed to the messaging layer and not answered yet
        self.paused = False  # too many pending SENDs: the listener stops reading
        self.backlog: list | None = None  # decoded packets (or JSON objects) not dispatched while paused
        self.on_resume: Any = None  # set by the listener: wakes its read loop when the session unpauses
        self.bucket: Any = None  # the connection's send TokenBucket (created by the gateway at login)
        self.offence: Any = None  # Offence: how long this connection has been refused
        self.refused = 0  # SENDs refused since the listener last asked read_delay()
        self.throttled = False  # REFUSED_PER_READ refusals: dispatch stops until the listener has waited
        self.rate_kicked = False

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes) -> None:
        """Bytes from the transport (any split of the stream)."""
        if self.state == CLOSED:
            return
        self.last_recv = time.monotonic()
        self.in_bytes += len(data)
        self.gw.metrics_bytes_in(self, len(data))
        if not self.dialect:
            stripped = data.lstrip()
            if not stripped:
                return
            if stripped[:1] == b"{":
                if self.gw.cfg_disable_jsonrpc:
                    self.reject("jsonrpc_disabled", "JSON-RPC is disabled on this server")
                    return
                self.dialect = "json"
                self.decoder = jsonrpc.JsonStreamDecoder()
            else:
                self.dialect = "bin"
                self.decoder = wk.FrameDecoder(wk.LATEST_VERSION)
        items = self.decoder.feed(data)
        if self.backlog:  # defensive: the listener does not read while paused
            self.backlog.extend(items)
            items, self.backlog = self.backlog, None
        self._dispatch(items)

    def resume(self) -> None:
        """Dispatch the backlog kept while paused (the listener calls this once woken)."""
        items, self.backlog = self.backlog, None
        self._dispatch(items or [])

    def _dispatch(self, items: list) -> None:
        binary = self.dialect == "bin"
        for i, item in enumerate(items):
            if self.paused or self.throttled or i == DISPATCH_BATCH:
                self.backlog = items[i:]
                return
            self.in_packets += 1
            if binary:
                self.gw.metrics_frame_in(self, item.type)
                self._on_packet(item)
            else:
                self._on_json(item)
            if self.state == CLOSED:
                return
        err = self.decoder.error
        if err is not None:
            if binary:
                self.reject(err.kind, str(err), err.reason)
            else:
                self._write_json(jsonrpc.error_response(None, err.code, str(err)))
                self.reject("malformed", str(err))

    def read_delay(self) -> float:
        """Seconds the listener should wait before reading more (0: read on)."""
        if self.rate_kicked:
            return 1.0
        n, self.refused = self.refused, 0
        if n < REFUSED_PER_READ:  # one SEND per WebSocket message, or a few: refusing them is cheap
            return 0.0
        self.throttled = False
        return self.gw.refused_read_delay(self)

    # ------------------------------------------------------------------ send admission
    def _admit(self, flags: int, client_seq: int, rid: Any = None) -> bool:
        """Rate limits: True to go on; otherwise SENDACK 22 was written (and maybe a kick is under way)."""
        if self.gw.admit_send(self):
            return True
        self.refused += 1
        if self.refused >= REFUSED_PER_READ:
            self.throttled = True  # the rest of this read waits in the backlog: refusing costs CPU too
        res = SendResult(wk.REASON_RATE_LIMIT)
        if self.dialect == "json":
            self._json_sendack(rid, flags, res)
        else:
            self._sendack(flags, client_seq, res)
        if not self.rate_kicked and self.offence is not None and self.offence.refused(time.monotonic()):
            self.rate_kicked = True
            self.gw.rate_limit_kick(self)
        return False

    def _submit(self, req: SendRequest, done) -> None:
        """Hand a SEND to the messaging layer, counting it as pending until ``done`` runs."""
        gw = self.gw
        self.pending_sends += 1
        gw.pending_sends += 1
        if self.pending_sends >= gw.max_pending_sends or gw.pending_sends > gw.node_max_pending_sends:
            self.paused = True  # (over the node's bound, every connection waits for its previous SEND)

        def answered(res: SendResult) -> None:
            self.pending_sends -= 1
            gw.pending_sends -= 1
            if self.paused and self.pending_sends <= self.gw.max_pending_sends // 2:
                self.paused = False
                if self.on_resume is not None:
                    self.on_resume()
            done(res)

        self.gw.submit(req, answered)

    # ------------------------------------------------------------------ binary dialect
    def _on_packet(self, p) -> None:
        t = p.type
        if self.state == AUTHED:
            if t == wk.SEND:
                self._on_send(p)
            elif t == wk.RECVACK:
                self._on_recvack(p.message_id, p.flags)
            elif t == wk.PING:
                self.write_frame(wk.PONG_BYTES)
            elif t == wk.DISCONNECT:
                self.close("client_disconnect")
            elif t == wk.SUB:
                pass  # WuKongIM v2 ignores SUB as well
            elif t == wk.CONNECT:
                self.reject("duplicate_connect", "CONNECT on an authenticated connection", wk.REASON_AUTH_FAIL)
            else:
                self.reject("unexpected_packet", f"{wk.TYPE_NAMES[t]} is not sent by clients",
                            wk.REASON_NOT_SUPPORT_HEADER)
        elif self.state == NEW:
            if t != wk.CONNECT:
                self.reject("not_connect_first", f"first packet must be CONNECT, got {wk.TYPE_NAMES[t]}",
                            wk.REASON_AUTH_FAIL)
                return
            self._on_connect(p)
        # AUTHING: frames that arrive during the token check are queued by the decoder order;
        # they are processed because _on_connect runs synchronously in this greenlet.

    def _on_connect(self, p: wk.Connect) -> None:
        self.state = AUTHING
        version = min(max(p.version, 1), wk.LATEST_VERSION)
        self.version = version
        self.decoder.version = version
        reason = self._authenticate(p.uid, p.device_flag, p.token)
        cipher = None
        server_key = salt = ""
        if reason == wk.REASON_SUCCESS and not self.gw.cfg_disable_encryption:
            if not p.client_key:
                reason = wk.REASON_CLIENT_KEY_IS_EMPTY
            else:
                try:
                    priv, server_key = new_server_key()
                    salt = random_salt()
                    cipher = SessionCipher.from_salt(derive_aes_key(priv, p.client_key), salt)
                except CryptoError as exc:
                    log.info("connect refused uid=%s conn=%s: bad client key (%s)", p.uid, self.conn_id, exc)
                    reason = wk.REASON_CLIENT_KEY_IS_EMPTY
        if reason != wk.REASON_SUCCESS:
            self.gw.count_reject(self, "auth_fail" if reason == wk.REASON_AUTH_FAIL else f"connect_{reason}")
            self.write_frame(wk.encode(wk.Connack(reason_code=reason), version))
            self.close(f"connect refused ({reason})", log_level=logging.INFO)
            return
        self.uid = p.uid
        self.device_flag = p.device_flag
        self.device_id = p.device_id
        self.cipher = cipher
        self.state = AUTHED
        ack = wk.Connack(int(time.time() * 1000) - p.client_timestamp, wk.REASON_SUCCESS, server_key, salt,
                         self.gw.node_id, version, p.version > 3)
        self.write_frame(wk.encode(ack, version))
        self.gw.on_authenticated(self)

    def _authenticate(self, uid: str, device_flag: int, token: str) -> int:
        if not uid or any(c in uid for c in SPECIAL_CHARS):
            return wk.REASON_AUTH_FAIL
        if uid == MANAGER_UID:
            mt = self.gw.cfg_manager_token
            return wk.REASON_SUCCESS if mt and token == mt else wk.REASON_AUTH_FAIL
        suffix = self.gw.cfg_visitors_suffix
        if suffix and uid.endswith(suffix):
            self.device_level = DEVICE_LEVEL_SLAVE  # a visitor: no token, slave level (as in WuKongIM)
            return wk.REASON_SUCCESS
        # tokenAuthOn is the authenticator's (mesh.im.users.connect_verdict): without it, any token and slave level,
        # but the ban check still runs
        res = self.gw.authenticate(uid, device_flag, token)
        self.device_level = res.device_level
        return res.reason

    def _on_send(self, p: wk.Send) -> None:
        self.in_msgs += 1
        if not self._admit(p.flags, p.client_seq):
            return
        if not p.channel_id:
            self._sendack(p.flags, p.client_seq, SendResult(wk.REASON_CHANNEL_ID_ERROR))
            return
        payload = p.payload
        if self.cipher is not None:
            expect = self.cipher.send_msg_key(p.client_seq, p.client_msg_no, p.channel_id, p.channel_type, payload)
            if expect != p.msg_key:
                self.gw.count_reject(self, "msg_key_mismatch")
                self._sendack(p.flags, p.client_seq, SendResult(wk.REASON_PAYLOAD_DECODE_ERROR))
                return
            try:
                payload = self.cipher.decrypt(payload)
            except CryptoError:
                self.gw.count_reject(self, "payload_decrypt")
                self._sendack(p.flags, p.client_seq, SendResult(wk.REASON_PAYLOAD_DECODE_ERROR))
                return
        req = SendRequest(self.uid, p.channel_id, p.channel_type, payload, p.client_msg_no or uuid.uuid4().hex + "1",
                          p.client_seq, p.flags, p.setting, p.expire, p.topic, self.device_flag, self.device_id,
                          (self.gw.node_id, self.conn_id), time.monotonic())
        flags, client_seq = p.flags, p.client_seq
        self._submit(req, lambda res: self._sendack(flags, client_seq, res, req.received_at))

    def _sendack(self, flags: int, client_seq: int, res: SendResult, received_at: float = 0.0) -> None:
        if self.state == CLOSED:
            return
        if self.dialect == "json":
            return  # answered by the JSON path
        self.write_frame(wk.encode(wk.Sendack(res.message_id, client_seq, res.message_seq, res.reason, flags),
                                   self.version))
        if received_at:
            self.gw.observe_send_latency(time.monotonic() - received_at)

    def _on_recvack(self, message_id: int, flags: int = 0) -> None:
        if flags & wk.FLAG_SYNC_ONCE and self.device_level == DEVICE_LEVEL_MASTER:
            self.gw.sync_once_acked(self, message_id)
        retry = self.retry
        if retry and retry.pop(message_id, None) is not None and not retry:
            self.retry = None
            self.gw.retry_done(self)

    # ------------------------------------------------------------------ JSON-RPC dialect
    def _on_json(self, obj: Any) -> None:
        if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
            self._write_json(jsonrpc.error_response(obj.get("id") if isinstance(obj, dict) else None,
                                                    jsonrpc.INVALID_REQUEST, "not a JSON-RPC request"))
            self.gw.count_reject(self, "jsonrpc_invalid")
            return
        method = obj["method"]
        rid = obj.get("id")
        params = obj.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self._write_json(jsonrpc.error_response(rid, jsonrpc.INVALID_PARAMS, "params must be an object"))
            return
        self.gw.metrics_json_in(self, method)
        if self.state == NEW:
            if method != "connect":
                self._write_json(jsonrpc.error_response(rid, jsonrpc.INVALID_REQUEST, "connect must come first"))
                self.reject("not_connect_first", "first request must be connect")
                return
            self._json_connect(rid, params)
            return
        if method == "send":
            self._json_send(rid, params)
        elif method == "recvack":
            try:
                self._on_recvack(int(params.get("messageId", 0)), jsonrpc.header_flags(params.get("header")))
            except (TypeError, ValueError):
                pass
        elif method == "ping":
            self._write_json(jsonrpc.response(rid, None))
        elif method == "disconnect":
            self.close("client_disconnect")
        elif method == "connect":
            self._write_json(jsonrpc.error_response(rid, jsonrpc.INVALID_REQUEST, "already connected"))
        else:
            self._write_json(jsonrpc.error_response(rid, jsonrpc.METHOD_NOT_FOUND, f"unknown method {method!r}"))

    def _json_connect(self, rid: Any, params: dict) -> None:
        self.state = AUTHING
        uid = params.get("uid")
        token = params.get("token") or ""
        try:
            device_flag = int(params.get("deviceFlag") or 0)
            version = int(params.get("version") or wk.LATEST_VERSION)
            client_ts = int(params.get("clientTimestamp") or 0)
        except (TypeError, ValueError):
            self._write_json(jsonrpc.error_response(rid, jsonrpc.INVALID_PARAMS, "deviceFlag, version and "
                                                    "clientTimestamp must be integers"))
            self.reject("malformed", "bad connect params")
            return
        version = min(max(version, 1), wk.LATEST_VERSION)
        reason = self._authenticate(uid if isinstance(uid, str) else "", device_flag, str(token))
        if reason != wk.REASON_SUCCESS:
            self.gw.count_reject(self, "auth_fail" if reason == wk.REASON_AUTH_FAIL else f"connect_{reason}")
            self._write_json(jsonrpc.response(rid, {"reasonCode": reason}))
            self.close(f"connect refused ({reason})", log_level=logging.INFO)
            return
        self.uid = uid
        self.device_flag = device_flag
        self.device_id = str(params.get("deviceId") or "")
        self.version = version
        self.state = AUTHED
        now = int(time.time() * 1000)
        result = {"reasonCode": wk.REASON_SUCCESS, "nodeId": self.gw.node_id,
                  "timeDiff": now - client_ts if client_ts else 0}
        if version > 3:
            result["serverVersion"] = version
        self._write_json(jsonrpc.response(rid, result))
        self.gw.on_authenticated(self)

    def _json_send(self, rid: Any, params: dict) -> None:
        self.in_msgs += 1
        channel_id = params.get("channelId")
        try:
            channel_type = int(params.get("channelType") or 0)
            expire = int(params.get("expire") or 0)
            payload = base64.b64decode(params.get("payload") or "", validate=True)
        except (TypeError, ValueError, binascii.Error):
            self._write_json(jsonrpc.error_response(rid, jsonrpc.INVALID_PARAMS,
                                                    "channelType/expire must be integers, payload base64"))
            self.gw.count_reject(self, "jsonrpc_invalid")
            return
        flags = jsonrpc.header_flags(params.get("header"))
        if not self._admit(flags, 0, rid):
            return
        if not isinstance(channel_id, str) or not channel_id:
            self._json_sendack(rid, flags, SendResult(wk.REASON_CHANNEL_ID_ERROR))
            return
        client_msg_no = params.get("clientMsgNo") or uuid.uuid4().hex + "1"
        req = SendRequest(self.uid, channel_id, channel_type, payload, str(client_msg_no), 0, flags,
                          jsonrpc.setting_byte(params.get("setting")), expire, str(params.get("topic") or ""),
                          self.device_flag, self.device_id, (self.gw.node_id, self.conn_id), time.monotonic())
        self._submit(req, lambda res: self._json_sendack(rid, flags, res, req.received_at))

    def _json_sendack(self, rid: Any, flags: int, res: SendResult, received_at: float = 0.0) -> None:
        if self.state == CLOSED:
            return
        result = {"messageId": str(res.message_id), "messageSeq": res.message_seq, "reasonCode": res.reason}
        h = jsonrpc.header_dict(flags)
        if h:
            result["header"] = h
        self._write_json(jsonrpc.response(rid, result))
        if received_at:
            self.gw.observe_send_latency(time.monotonic() - received_at)

    def _write_json(self, obj: dict) -> None:
        self.write_frame(jsonrpc.dumps(obj), text=True)

    # ------------------------------------------------------------------ output
    def deliver(self, m: Delivery, frame_cache: dict | None = None) -> None:
        """Write one committed message to this session as RECV (and keep it until RECVACK)."""
        if self.state != AUTHED:
            return
        channel_id = m.channel_id
        if m.channel_type == 1 and channel_id == self.uid:
            channel_id = m.from_uid  # the receiver sees the chat under the sender's uid
        flags = m.flags & 0x07  # RedDot/SyncOnce/NoPersist from the SEND; never DUP
        if self.uid == m.from_uid:
            flags &= ~wk.FLAG_RED_DOT
        if self.dialect == "json":
            params = {"header": jsonrpc.header_dict(flags), "messageId": str(m.message_id),
                      "messageSeq": m.message_seq, "clientMsgNo": m.client_msg_no, "timestamp": m.timestamp,
                      "channelId": channel_id, "channelType": m.channel_type, "fromUid": m.from_uid,
                      "payload": base64.b64encode(m.payload).decode()}
            if m.setting:
                params["setting"] = jsonrpc.setting_dict(m.setting)
            if m.expire:
                params["expire"] = m.expire
            if m.topic:
                params["topic"] = m.topic
            frame: Any = jsonrpc.dumps(jsonrpc.notification("recv", params))
            self.write_frame(frame, text=True)
        else:
            # the bytes every recipient shares are encoded once per message (frame_cache)
            cipher = self.cipher
            key = (channel_id, flags, self.version, cipher is None)
            cached = frame_cache.get(key) if frame_cache is not None else None
            if cached is None:
                recv = wk.Recv(m.setting & ~0x06, "", m.from_uid, channel_id, m.channel_type, m.expire,
                               m.client_msg_no, 0, "", 0, m.message_id, m.message_seq, m.timestamp, m.topic,
                               m.payload, flags)
                cached = wk.encode(recv, self.version) if cipher is None else wk.RecvTemplate(recv, self.version)
                if frame_cache is not None:
                    frame_cache[key] = cached
            if cipher is None:
                frame = cached
            else:
                payload = cipher.encrypt(m.payload)
                skey = ("sign", channel_id)
                prefix = frame_cache.get(skey) if frame_cache is not None else None
                if prefix is None:
                    prefix = recv_sign_prefix(m.message_id, m.message_seq, m.client_msg_no, m.timestamp, m.from_uid,
                                              channel_id, m.channel_type)
                    if frame_cache is not None:
                        frame_cache[skey] = prefix
                frame = cached.frame(cipher.msg_key(prefix + payload), payload)
            self.write_frame(frame)
        self.out_msgs += 1
        if not (m.flags & wk.FLAG_NO_PERSIST) and self.gw.retry_max > 0:
            if self.retry is None:
                self.retry = {}
                self.gw.retry_started(self)
            self.retry[m.message_id] = [frame, time.monotonic() + self.gw.retry_interval, 0]

    def resend_due(self, now: float) -> None:
        """Resend RECVs whose RECVACK is overdue (called by the gateway's sweeper)."""
        retry = self.retry
        if not retry or self.state != AUTHED:
            return
        for mid, entry in list(retry.items()):
            if entry[1] > now:
                continue
            if entry[2] >= self.gw.retry_max:
                del retry[mid]
                self.gw.count_retry_exhausted()
                continue
            entry[2] += 1
            entry[1] = now + self.gw.retry_interval
            self.gw.count_retry()
            self.write_frame(entry[0], text=self.dialect == "json")
        if not retry:
            self.retry = None
            self.gw.retry_done(self)

    def write_frame(self, frame, text: bool = False) -> None:
        """Queue one frame (bytes, or str in the JSON dialect) for the client; never waits.

        The socket usually takes it at once (one non-blocking write); otherwise it waits
        in the outbound buffer, drained by this connection's own writer. A client over
        the buffer's limits is disconnected as slow.
        """
        self.write_bytes(self.transport.frame(frame, text or isinstance(frame, str)))

    def write_bytes(self, data: bytes) -> None:
        """Queue bytes already framed for the transport (a WebSocket pong, say); never waits."""
        if self.state == CLOSED:
            return
        n = len(data)
        self.out_packets += 1
        self.out_bytes += n
        self.gw.metrics_bytes_out(self, n)
        out = self._out
        if out is None:
            if not self._writing:
                cork = self._corked
                if cork is not None:
                    cork.append(data)
                    return
                try:
                    sent = self.transport.write_nowait((data,))
                except Exception as exc:  # the peer went away
                    self._write_failed(exc)
                    return
                if sent >= n:
                    return
                out = self._out = Outbound()
                out.push(data, time.monotonic())
                out.sent(sent)
                self._start_writer()
                return
            out = self._out = Outbound()
        now = time.monotonic()
        out.push(data, now)
        if len(out) > 1:
            over = out.too_slow(now, self.gw.out_max_bytes, self.gw.out_max_delay, self.gw.max_pending_frames)
            if over:
                self.too_slow(over, now)
                return
        if not self._writing:
            self.flush()

    def cork(self) -> None:
        """Hold this connection's frames until ``uncork`` (the gateway delivers a batch)."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        """Write the frames held since ``cork`` in one ``sendmsg``."""
        frames, self._corked = self._corked, None
        if not frames or self.state == CLOSED:
            return
        if len(frames) > MAX_BATCH_FRAMES or self._out is not None or self._writing:
            out = self._out
            if out is None:
                out = self._out = Outbound()
            now = time.monotonic()
            for f in frames:
                out.push(f, now)
            self.flush()
            return
        try:
            sent = self.transport.write_nowait(frames)
        except Exception as exc:
            self._write_failed(exc)
            return
        if sent < sum(len(f) for f in frames):
            out = self._out = Outbound()
            now = time.monotonic()
            for f in frames:
                out.push(f, now)
            out.sent(sent)
            self._start_writer()

    def flush(self) -> None:
        """Write what the socket takes now without waiting; the writer takes over the rest."""
        out = self._out
        if out is None or self._writing:
            return
        try:
            while out:
                n = self.transport.write_nowait(out.batch())
                if not n:
                    break
                out.sent(n)
        except Exception as exc:
            self._write_failed(exc)
            return
        if out:
            self._start_writer()
        elif self.state != CLOSED:
            self._out = None

    def _start_writer(self) -> None:
        self._writing = True
        self.gw.start_writer(self)

    def drain(self) -> None:
        """The writer: wait until the socket takes the queued frames (runs in its own greenlet).

        After the session is closed it keeps writing what was queued (the last DISCONNECT)
        until the buffer is empty or the gateway closes the transport.
        """
        out = self._out
        try:
            while out:
                n = self.transport.write_wait(out.batch())
                out.sent(n)
                if self.state != CLOSED and out:
                    now = time.monotonic()
                    over = out.too_slow(now, self.gw.out_max_bytes, self.gw.out_max_delay,
                                        self.gw.max_pending_frames)
                    if over:
                        self.too_slow(over, now)
        except Exception as exc:
            self._writing = False
            self._write_failed(exc)
            return
        self._writing = False
        if self.state == CLOSED:
            self._close_transport()
        elif self._out is out and not out:
            self._out = None

    def _write_failed(self, exc: Exception) -> None:
        if self.state == CLOSED:
            self._close_transport()
        else:
            self.close(f"write failed: {type(exc).__name__}")

    def too_slow(self, over: str, now: float) -> None:
        """Disconnect a client that does not read fast enough: DISCONNECT with the figures, then close."""
        if self.state == CLOSED:
            return
        out = self._out
        queued = out.nbytes if out is not None else 0
        oldest = out.oldest_age(now) if out is not None else 0.0
        frames = len(out) if out is not None else 0
        limit = {"bytes": f"{self.gw.out_max_bytes} bytes", "age": f"{self.gw.out_max_delay:g}s",
                 "frames": f"{self.gw.max_pending_frames} frames"}[over]
        text = f"slow client: queued {queued} bytes, oldest {oldest:.1f}s, {frames} frames (limit {limit})"
        if out is not None:
            out.drop_unsent()
        self.gw.count_slow(self, over)
        if self.dialect == "json" and self.state == AUTHED:
            self._write_last(self.transport.frame(jsonrpc.dumps(jsonrpc.notification(
                "disconnect", {"reasonCode": wk.REASON_SYSTEM_ERROR, "reason": text})), True))
        elif self.dialect == "bin":
            self._write_last(self.transport.frame(wk.encode(wk.Disconnect(wk.REASON_SYSTEM_ERROR, text),
                                                            self.version), False))
        self.close(text, log_level=logging.WARNING)

    def _write_last(self, data) -> None:
        """Queue a final frame past the limits (the DISCONNECT or the WebSocket close)."""
        out = self._out
        if out is None:
            out = self._out = Outbound()
        out.push(data, time.monotonic())

    # ------------------------------------------------------------------ closing
    def reject(self, kind: str, detail: str, reason: int | None = None) -> None:
        """Close because of bad input: tell the client why (where the protocol can), count, log."""
        if self.state == CLOSED:
            return
        self.gw.count_reject(self, kind)
        if reason is not None and self.dialect == "bin":
            try:
                if self.state in (NEW, AUTHING) and kind in ("not_connect_first",):
                    frame = wk.encode(wk.Disconnect(reason, detail[:200]), self.version)
                elif self.state in (NEW, AUTHING):
                    frame = wk.encode(wk.Connack(reason_code=reason), self.version)
                else:
                    frame = wk.encode(wk.Disconnect(reason, detail[:200]), self.version)
                self.write_frame(frame)
            except Exception:
                pass
        elif self.dialect == "json" and self.state == AUTHED:
            self._write_json(jsonrpc.notification("disconnect", {"reasonCode": reason or 0, "reason": detail[:200]}))
        self.close(f"{kind}: {detail}", log_level=logging.INFO)

    def kick(self, reason: int, text: str, delay: float) -> None:
        """DISCONNECT with ``reason`` now, close after ``delay`` seconds (WuKongIM's kick)."""
        if self.state != AUTHED:
            return
        if self.dialect == "json":
            self._write_json(jsonrpc.notification("disconnect", {"reasonCode": reason, "reason": text}))
        else:
            self.write_frame(wk.encode(wk.Disconnect(reason, text), self.version))
        self.gw.close_later(self, delay, f"kicked ({text})")

    def close(self, why: str = "", log_level: int = logging.DEBUG) -> None:
        """Close: what is queued (a DISCONNECT, say) is still written for up to ``CLOSE_LINGER`` seconds."""
        if self.state == CLOSED:
            return
        was_authed = self.state == AUTHED
        self.state = CLOSED
        self.close_reason = why
        self.retry = None
        self.backlog = None
        if self.paused:
            self.paused = False
            if self.on_resume is not None:
                self.on_resume()
        if why:
            log.log(log_level, "connection closed conn=%s uid=%s remote=%s: %s", self.conn_id, self.uid or "-",
                    self.remote, why)
        goodbye = getattr(self.transport, "goodbye", b"")
        if goodbye:
            self._write_last(goodbye)
        if self._out is not None and not self._writing:
            self.flush()
        if self._out and self._writing:
            self.gw.close_transport_later(self, CLOSE_LINGER)
        else:
            self._close_transport()
        self.gw.on_closed(self, was_authed)

    def _close_transport(self) -> None:
        self._out = None
        try:
            self.transport.close()
        except Exception:
            pass
