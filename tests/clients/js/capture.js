#!/usr/bin/env node
// Tiny fake WKProto-over-WebSocket server used to observe what
// wukongimjssdk 1.0.4 really puts on the wire. Not a reference server: it
// only knows the protocol-v2 layouts 1.0.4 uses (reference doc §1.3).
//
//   node capture.js [--port 0] [--out file.json] [--duration ms]
//                   [--reply none|ok|fail] [--reason N] [--close-after ms]
//                   [--no-pong] [--no-echo] [--coalesce sendack-first|recv-first]
//                   [--kick-after ms] [--inject HEX[@ms]]... [--upgrade-delay ms]
//
// --reply none  (default) record only, never answer (pure capture)
// --reply ok    CONNACK success with a real X25519/AES session, PONG for PING,
//               SENDACK for SEND and (unless --no-echo) the message echoed back
//               to the sender as a RECV.
// --reply fail  CONNACK with reason --reason (default 2 AuthFail).
// --inject HEX[@ms] raw bytes (one WS message) sent ms (default 300) after a
//               successful CONNACK; repeatable.
// --upgrade-delay ms  hold every WebSocket upgrade this long (client stays CONNECTING)
// --close-after server closes the socket this many ms after the CONNACK, or
//               after the DISCONNECT when --kick-after is used.
//
// stdout: JSON lines ({"event":"listening","port":N} first, then one record per
// WebSocket message in either direction). --out writes all records (hex + a
// decode) to a JSON file when --duration (counted from the first connection)
// expires, or on SIGINT/SIGTERM.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const { WebSocketServer } = require("ws");

const TYPE_NAMES = {
  1: "CONNECT", 2: "CONNACK", 3: "SEND", 4: "SENDACK", 5: "RECV", 6: "RECVACK",
  7: "PING", 8: "PONG", 9: "DISCONNECT", 10: "SUB", 11: "SUBACK", 12: "EVENT",
};

// ------------------------------------------------------------------ codec
class Reader {
  constructor(buf) { this.b = buf; this.o = 0; }
  need(n) { if (this.o + n > this.b.length) throw new Error(`short read at ${this.o}+${n}/${this.b.length}`); }
  u8() { this.need(1); return this.b[this.o++]; }
  u16() { this.need(2); const v = this.b.readUInt16BE(this.o); this.o += 2; return v; }
  u32() { this.need(4); const v = this.b.readUInt32BE(this.o); this.o += 4; return v; }
  i64() { this.need(8); const v = this.b.readBigInt64BE(this.o); this.o += 8; return v.toString(); }
  str() { const n = this.u16(); this.need(n); const s = this.b.subarray(this.o, this.o + n).toString("utf8"); this.o += n; return s; }
  rest() { const r = this.b.subarray(this.o); this.o = this.b.length; return r; }
}

class Writer {
  constructor() { this.parts = []; }
  u8(v) { this.parts.push(Buffer.from([v & 0xff])); return this; }
  u32(v) { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); this.parts.push(b); return this; }
  i32(v) { const b = Buffer.alloc(4); b.writeInt32BE(v | 0); this.parts.push(b); return this; }
  i64(v) { const b = Buffer.alloc(8); b.writeBigInt64BE(BigInt(v)); this.parts.push(b); return this; }
  str(s) { const d = Buffer.from(s || "", "utf8"); const l = Buffer.alloc(2); l.writeUInt16BE(d.length); this.parts.push(l, d); return this; }
  bytes(b) { this.parts.push(Buffer.from(b)); return this; }
  buf() { return Buffer.concat(this.parts); }
}

function varint(n) {
  const out = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    out.push(d);
  } while (n > 0);
  return Buffer.from(out);
}

function frame(type, flags, body) {
  if (type === 7 || type === 8) return Buffer.from([type << 4]); // PING/PONG: 1 byte
  return Buffer.concat([Buffer.from([(type << 4) | (flags & 0x0f)]), varint(body.length), body]);
}

// Split a byte stream into frames. Returns {frames:[{header,type,body,raw}], rest}.
function splitFrames(buf) {
  const frames = [];
  let o = 0;
  while (o < buf.length) {
    const header = buf[o];
    const type = header >> 4;
    if (type === 7 || type === 8) {
      frames.push({ header, type, body: Buffer.alloc(0), raw: buf.subarray(o, o + 1) });
      o += 1;
      continue;
    }
    let p = o + 1, mult = 1, len = 0, complete = false;
    for (let i = 0; i < 4 && p < buf.length; i++) {
      const d = buf[p++];
      len += (d & 0x7f) * mult;
      mult *= 128;
      if ((d & 0x80) === 0) { complete = true; break; }
    }
    if (!complete || p + len > buf.length) break;
    frames.push({ header, type, body: buf.subarray(p, p + len), raw: buf.subarray(o, p + len) });
    o = p + len;
  }
  return { frames, rest: buf.subarray(o) };
}

function flagsOf(header) {
  return { dup: !!(header & 8), syncOnce: !!(header & 4), redDot: !!(header & 2), noPersist: !!(header & 1) };
}

// Decode a client->server frame with the protocol-v2 layouts (1.0.4).
function decodeClientFrame(f, version) {
  const r = new Reader(f.body);
  const d = { type: TYPE_NAMES[f.type] || `UNKNOWN(${f.type})`, header: "0x" + f.header.toString(16).padStart(2, "0"), flags: flagsOf(f.header), length: f.raw.length };
  switch (f.type) {
    case 1: // CONNECT
      d.version = r.u8();
      d.deviceFlag = r.u8();
      d.deviceID = r.str();
      d.uid = r.str();
      d.token = r.str();
      d.clientTimestamp = r.i64();
      d.clientKey = r.str();
      d.clientKeyRawLen = Buffer.from(d.clientKey, "base64").length;
      break;
    case 3: { // SEND (v2: no Expire; old Stream bit 1<<2 -> StreamNo)
      d.setting = r.u8();
      d.clientSeq = r.u32();
      d.clientMsgNo = r.str();
      if (d.setting & 0x04) d.streamNo = r.str();
      d.channelID = r.str();
      d.channelType = r.u8();
      if (version >= 3) d.expire = r.u32();
      d.msgKey = r.str();
      if (d.setting & 0x08) d.topic = r.str();
      d.payload = r.rest().toString("latin1");
      break;
    }
    case 6: // RECVACK
      d.messageID = r.i64();
      d.messageSeq = r.u32();
      break;
    case 9:
      d.reasonCode = r.u8();
      d.reason = r.str();
      break;
    case 10:
      d.setting = r.u8();
      d.subNo = r.str();
      d.channelID = r.str();
      d.channelType = r.u8();
      d.action = r.u8();
      d.param = r.str();
      break;
    default:
      break;
  }
  if (r.o !== f.body.length) d.trailingBytes = f.body.length - r.o;
  return d;
}

// ------------------------------------------------------------------ crypto
const md5hex = (s) => crypto.createHash("md5").update(s).digest("hex");

function newX25519() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("x25519");
  return { privateKey, pubRaw: Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url") };
}

function x25519Shared(privateKey, peerRaw) {
  const publicKey = crypto.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peerRaw).toString("base64url") }, format: "jwk" });
  return crypto.diffieHellman({ privateKey, publicKey });
}

function randomSalt(n = 16) {
  const a = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  let s = "";
  for (const b of crypto.randomBytes(n)) s += a[b % a.length];
  return s;
}

class Session {
  constructor(aesKey, aesIV) { this.key = Buffer.from(aesKey, "latin1"); this.iv = Buffer.from(aesIV, "latin1"); }
  encrypt(plain) { // -> base64 text
    const c = crypto.createCipheriv("aes-128-cbc", this.key, this.iv);
    return Buffer.concat([c.update(plain), c.final()]).toString("base64");
  }
  decrypt(b64) {
    const d = crypto.createDecipheriv("aes-128-cbc", this.key, this.iv);
    return Buffer.concat([d.update(Buffer.from(b64, "base64")), d.final()]);
  }
  msgKey(sign) { return md5hex(this.encrypt(Buffer.from(sign, "utf8"))); }
}

// ------------------------------------------------------------------ server
function startFakeServer(o = {}) {
  const opts = { port: 0, host: "127.0.0.1", reply: "none", reason: 2, pong: true, echo: true, coalesce: null, kickAfter: null, closeAfter: null, inject: [], upgradeDelay: 0, onRecord: null, ...o };
  const t0 = Date.now();
  const records = [];
  let connCount = 0;
  let messageID = 1790000000000000000n;
  const channelSeq = new Map();
  const wsOpts = { host: opts.host, port: opts.port };
  if (opts.upgradeDelay > 0) wsOpts.verifyClient = (info, cb) => setTimeout(() => cb(true), opts.upgradeDelay);
  const wss = new WebSocketServer(wsOpts);

  function record(rec) {
    rec.t = Date.now() - t0;
    records.push(rec);
    if (opts.onRecord) opts.onRecord(rec);
  }

  wss.on("connection", (ws, req) => {
    const conn = ++connCount;
    const st = { buf: Buffer.alloc(0), version: 0, session: null, uid: null, timers: [] };
    record({ conn, dir: "event", what: "open", path: req.url, headers: { "user-agent": req.headers["user-agent"] || null, origin: req.headers.origin || null, "sec-websocket-protocol": req.headers["sec-websocket-protocol"] || null } });

    function send(bufs, label) {
      const data = Buffer.concat(bufs);
      record({ conn, dir: "out", label, hex: data.toString("hex"), frames: splitFrames(data).frames.map((f) => ({ type: TYPE_NAMES[f.type], header: "0x" + f.header.toString(16), length: f.raw.length })) });
      ws.send(data, { binary: true });
    }

    function onFrame(f, d) {
      if (opts.reply === "none") return;
      switch (f.type) {
        case 1: { // CONNECT
          st.version = d.version;
          st.uid = d.uid;
          const w = new Writer();
          let flags = 0;
          if (opts.reply === "ok") {
            const kp = newX25519();
            const shared = x25519Shared(kp.privateKey, Buffer.from(d.clientKey, "base64").subarray(0, 32));
            const salt = randomSalt();
            st.session = new Session(md5hex(shared.toString("base64")).slice(0, 16), salt);
            if (d.version > 3) { flags = 1; w.u8(Math.min(d.version, 5)); }
            w.i64(BigInt(Date.now()) - BigInt(d.clientTimestamp)).u8(1).str(kp.pubRaw.toString("base64")).str(salt);
            if (d.version >= 4) w.i64(1);
            send([frame(2, flags, w.buf())], "CONNACK ok");
            for (const inj of opts.inject) {
              const [hex, ms] = inj.split("@");
              st.timers.push(setTimeout(() => send([Buffer.from(hex, "hex")], "inject"), ms ? parseInt(ms, 10) : 300));
            }
            if (opts.kickAfter !== null) {
              st.timers.push(setTimeout(() => {
                send([frame(9, 0, new Writer().u8(12).str("login in other device").buf())], "DISCONNECT kick");
                if (opts.closeAfter !== null) st.timers.push(setTimeout(() => ws.close(), opts.closeAfter));
              }, opts.kickAfter));
            } else if (opts.closeAfter !== null) st.timers.push(setTimeout(() => ws.close(), opts.closeAfter));
          } else {
            w.i64(0).u8(opts.reason).str("").str("");
            send([frame(2, 0, w.buf())], `CONNACK reason ${opts.reason}`);
            if (opts.closeAfter !== null) st.timers.push(setTimeout(() => ws.close(), opts.closeAfter));
          }
          break;
        }
        case 7: // PING
          if (opts.pong) send([frame(8, 0, Buffer.alloc(0))], "PONG");
          break;
        case 3: { // SEND
          if (!st.session) break;
          const s = st.session;
          const sign = `${d.clientSeq}${d.clientMsgNo}${d.channelID}${d.channelType}${d.payload}`;
          let reason = 1;
          let plain = null;
          if (s.msgKey(sign) !== d.msgKey) reason = 9;
          else {
            try { plain = s.decrypt(d.payload); } catch (e) { reason = 9; }
          }
          const key = `${d.channelID}/${d.channelType}`;
          const seq = (channelSeq.get(key) || 0) + 1;
          const mid = ++messageID;
          if (reason === 1) channelSeq.set(key, seq);
          const ack = frame(4, f.header & 0x0f, new Writer().i64(mid).u32(d.clientSeq).u32(reason === 1 ? seq : 0).u8(reason).buf());
          record({ conn, dir: "event", what: "send-verified", msgKeyOk: reason === 1, plaintext: plain ? plain.toString("utf8") : null });
          if (reason !== 1 || !opts.echo) { send([ack], "SENDACK"); break; }
          // echo back as RECV (v2 layout: no Expire, no stream fields)
          const ts = Math.floor(Date.now() / 1000);
          const enc = s.encrypt(plain);
          const fromUID = st.uid;
          const channelID = d.channelType === 1 ? st.uid : d.channelID; // person chat: peer's uid as seen by receiver
          const msgKey = s.msgKey(`${mid}${seq}${d.clientMsgNo}${ts}${fromUID}${channelID}${d.channelType}${enc}`);
          const recvBody = new Writer().u8(0).str(msgKey).str(fromUID).str(channelID).u8(d.channelType).str(d.clientMsgNo).i64(mid).u32(seq).i32(ts).bytes(Buffer.from(enc, "latin1")).buf();
          const recv = frame(5, 0x02, recvBody);
          if (opts.coalesce === "sendack-first") send([ack, recv], "SENDACK+RECV coalesced");
          else if (opts.coalesce === "recv-first") send([recv, ack], "RECV+SENDACK coalesced");
          else { send([ack], "SENDACK"); send([recv], "RECV echo"); }
          break;
        }
        default:
          break;
      }
    }

    ws.on("message", (data, isBinary) => {
      const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
      st.buf = Buffer.concat([st.buf, bytes]);
      const { frames, rest } = splitFrames(st.buf);
      st.buf = Buffer.from(rest);
      const decoded = frames.map((f) => {
        try { return decodeClientFrame(f, st.version || 2); } catch (e) { return { type: TYPE_NAMES[f.type], error: e.message }; }
      });
      record({ conn, dir: "in", binary: isBinary, hex: bytes.toString("hex"), frames: decoded, pendingBytes: st.buf.length });
      frames.forEach((f, i) => onFrame(f, decoded[i]));
    });
    ws.on("close", (code, reason) => {
      st.timers.forEach(clearTimeout);
      record({ conn, dir: "event", what: "close", code, reason: reason.toString() });
    });
    ws.on("error", (e) => record({ conn, dir: "event", what: "error", message: e.message }));
  });

  const ready = new Promise((resolve, reject) => {
    wss.once("listening", () => resolve(wss.address().port));
    wss.once("error", reject);
  });
  return {
    ready,
    records,
    wss,
    close: () => new Promise((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }),
  };
}

// ------------------------------------------------------------------ CLI
function main() {
  const a = process.argv.slice(2);
  const o = { port: 5299, reply: "none" };
  let out = null, duration = null;
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    const v = () => a[++i];
    switch (k) {
      case "--port": o.port = parseInt(v(), 10); break;
      case "--host": o.host = v(); break;
      case "--out": out = v(); break;
      case "--duration": duration = parseInt(v(), 10); break;
      case "--reply": o.reply = v(); break;
      case "--reason": o.reason = parseInt(v(), 10); break;
      case "--close-after": o.closeAfter = parseInt(v(), 10); break;
      case "--no-pong": o.pong = false; break;
      case "--no-echo": o.echo = false; break;
      case "--coalesce": o.coalesce = v(); break;
      case "--kick-after": o.kickAfter = parseInt(v(), 10); break;
      case "--upgrade-delay": o.upgradeDelay = parseInt(v(), 10); break;
      case "--inject": (o.inject = o.inject || []).push(v()); break;
      default:
        process.stderr.write(`capture.js: unknown argument ${k}\n`);
        process.exit(2);
    }
  }
  let timer = null;
  let srv;
  const finish = async () => {
    if (out) {
      fs.writeFileSync(out, JSON.stringify({ capturedAt: new Date().toISOString(), options: { ...o, duration }, records: srv.records }, null, 2) + "\n");
      process.stderr.write(`capture.js: wrote ${srv.records.length} records to ${out}\n`);
    }
    await srv.close();
    process.exit(0);
  };
  srv = startFakeServer({
    ...o,
    onRecord: (rec) => {
      process.stdout.write(JSON.stringify(rec) + "\n");
      if (duration !== null && timer === null && rec.what === "open") timer = setTimeout(finish, duration);
    },
  });
  srv.ready.then((port) => process.stdout.write(JSON.stringify({ event: "listening", port }) + "\n"));
  process.on("SIGINT", finish);
  process.on("SIGTERM", finish);
}

module.exports = { startFakeServer, splitFrames, decodeClientFrame, frame, Writer, Reader, Session, newX25519, x25519Shared, md5hex };

if (require.main === module) main();
