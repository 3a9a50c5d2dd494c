#!/usr/bin/env node
// Skein test driver: runs ONE wukongimjssdk 1.0.4 client (through the esbuild
// bundle dist/wkjs.cjs) and speaks line-delimited JSON.
//
//   node driver.js --url ws://127.0.0.1:5200 --uid u1 --token t1 [--device-flag 1]
//                  [--auto-connect] [--heartbeat-ms N] [--sdk-log stderr|none]
//
// stdout: exactly one JSON object per line (events), nothing else.
// stdin:  one JSON command per line:
//   {"cmd":"connect"}
//   {"cmd":"send","channelID":"u2","channelType":1,"text":"hello","id":"opt-tag"}
//   {"cmd":"disconnect"}
//   {"cmd":"status"}
//   {"cmd":"exit"}
// See README.md for the event list.
"use strict";

const path = require("path");
const util = require("util");

// ---------------------------------------------------------------- stdout / logs
// Keep a private handle on the real stdout writer; everything the SDK prints
// via console.* goes to stderr (or nowhere) so stdout carries only JSON lines.
const rawStdoutWrite = process.stdout.write.bind(process.stdout);
const t0 = Date.now();

function emit(obj) {
  const line = JSON.stringify({ ...obj, t: Date.now() - t0 }) + "\n";
  rawStdoutWrite(line);
}

function parseArgs(argv) {
  const out = { deviceFlag: 1, autoConnect: false, heartbeatMs: null, sdkLog: "stderr" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case "--url": out.url = next(); break;
      case "--uid": out.uid = next(); break;
      case "--token": out.token = next(); break;
      case "--device-flag": out.deviceFlag = parseInt(next(), 10); break;
      case "--auto-connect": out.autoConnect = true; break;
      case "--heartbeat-ms": out.heartbeatMs = parseInt(next(), 10); break;
      case "--sdk-log": out.sdkLog = next(); break;
      case "-h":
      case "--help":
        process.stderr.write(
          "usage: node driver.js --url ws://host:port --uid U --token T [--device-flag 1]\n" +
          "       [--auto-connect] [--heartbeat-ms N] [--sdk-log stderr|none]\n");
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  if (!out.url || out.uid === undefined || out.token === undefined) {
    throw new Error("--url, --uid and --token are required");
  }
  if (!Number.isInteger(out.deviceFlag)) throw new Error("--device-flag must be an integer");
  return out;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`driver.js: ${e.message}\n`);
  process.exit(2);
}

function sdkLog(level, args) {
  if (opts.sdkLog === "none") return;
  // depth 0: the SDK logs whole WebSocket close/error events; keep them short.
  const msg = args
    .map((a) => (typeof a === "string" ? a : util.inspect(a, { depth: 0, breakLength: Infinity })))
    .join(" ");
  process.stderr.write(`[sdk ${level}] ${msg}\n`);
}
for (const level of ["log", "debug", "info", "warn", "error", "trace"]) {
  console[level] = (...args) => sdkLog(level, args);
}

// --------------------------------------------------------------- SDK loading
// Node 20 has no global WebSocket; wukongimjssdk 1.0.4 calls `new WebSocket(addr)`.
globalThis.WebSocket = require("ws");

let wk;
try {
  wk = require(path.join(__dirname, "dist", "wkjs.cjs"));
} catch (e) {
  process.stderr.write(`driver.js: cannot load dist/wkjs.cjs (run \`npm ci && npm run build\` in ${__dirname}): ${e.message}\n`);
  process.exit(2);
}
const { WKSDK, Channel, MessageText, ConnectStatus, MessageStatus } = wk;

const sdk = WKSDK.shared();
sdk.config.addr = opts.url;
sdk.config.uid = opts.uid;
sdk.config.token = opts.token;
sdk.config.deviceFlag = opts.deviceFlag;
if (opts.heartbeatMs) sdk.config.heartbeatInterval = opts.heartbeatMs;

const connectManager = sdk.connectManager;
const chatManager = sdk.chatManager;

function statusName(s) {
  return ConnectStatus[s] !== undefined ? ConnectStatus[s] : s;
}

function str(v) {
  // messageID arrives as a BigNumber (SENDACK) or a decimal string (RECV).
  if (v === undefined || v === null) return v;
  return typeof v === "object" && typeof v.toString === "function" ? v.toString(10) : String(v);
}

// clientSeq -> clientMsgNo (SENDACK carries only clientSeq on the wire).
const clientMsgNoBySeq = new Map();

// --------------------------------------------------------------- listeners
// 1.0.4 calls listener(status, reasonCode):
//   CONNACK ok        -> (Connected=1, 1)
//   CONNACK not ok    -> (ConnectFail=3, connack.reasonCode)
//   DISCONNECT packet -> (ConnectKick=4, disconnect.reasonCode)
//   ws close/error    -> (Disconnect=0, 0)   only if status was not already Disconnect
// It never notifies "Connecting", and sdk.disconnect() notifies nothing.
connectManager.addConnectStatusListener((status, reasonCode) => {
  emit({ event: "status", status: statusName(status), statusCode: status, reasonCode });
});

chatManager.addMessageStatusListener((ack) => {
  emit({
    event: "sendack",
    clientSeq: ack.clientSeq,
    clientMsgNo: clientMsgNoBySeq.has(ack.clientSeq) ? clientMsgNoBySeq.get(ack.clientSeq) : null,
    messageID: str(ack.messageID),
    messageSeq: ack.messageSeq,
    reasonCode: ack.reasonCode,
  });
});

function messageFields(m) {
  const content = m.content || {};
  return {
    fromUID: m.fromUID,
    channelID: m.channel ? m.channel.channelID : undefined,
    channelType: m.channel ? m.channel.channelType : undefined,
    messageID: str(m.messageID),
    messageSeq: m.messageSeq,
    clientMsgNo: m.clientMsgNo,
    clientSeq: m.clientSeq,
    timestamp: m.timestamp,
    text: content.text !== undefined ? content.text : null,
    // UnknownContent reports 0; realContentType keeps the payload's "type".
    contentType: content.realContentType !== undefined ? content.realContentType : m.contentType,
    sdkContentType: m.contentType,
    payload: content.contentObj !== undefined ? content.contentObj : null,
    header: m.header
      ? { reddot: !!m.header.reddot, noPersist: !!m.header.noPersist, syncOnce: !!m.header.syncOnce, dup: !!m.header.dup }
      : null,
  };
}

// chatManager.send() also pushes the outgoing message to the message
// listeners (status Wait, no messageID) -- report that as "outgoing".
chatManager.addMessageListener((m) => {
  const local = m.status === MessageStatus.Wait && m.messageID === undefined;
  emit({ event: local ? "outgoing" : "message", ...messageFields(m) });
});

// contentType 99 (cmd) messages go to CMD listeners instead of message listeners.
chatManager.addCMDListener((m) => {
  emit({ event: "cmd", ...messageFields(m) });
});

// --------------------------------------------------------------- robustness
// The SDK throws from timers (e.g. heartbeat PING on a socket that is still
// CONNECTING -> ws throws) and rejects promises (bad RECV payload). Report,
// don't die: a dying driver would hide the server behaviour under test.
process.on("uncaughtException", (e) => {
  emit({ event: "error", where: "uncaughtException", message: String(e && e.message ? e.message : e) });
});
process.on("unhandledRejection", (e) => {
  emit({ event: "error", where: "unhandledRejection", message: String(e && e.message ? e.message : e) });
});

// --------------------------------------------------------------- commands
function doConnect() {
  const s = connectManager.status;
  if (s === ConnectStatus.Connected || s === ConnectStatus.Connecting) {
    // A second connect() while Connected would open a second socket and leak
    // the first one; 1.0.4 only guards against Connecting.
    emit({ event: "cmdresult", cmd: "connect", ok: false, note: `already ${statusName(s)}` });
    return;
  }
  sdk.connect();
  emit({ event: "cmdresult", cmd: "connect", ok: true });
}

function doSend(c) {
  if (typeof c.channelID !== "string" || c.channelID === "") {
    emit({ event: "cmdresult", cmd: "send", ok: false, id: c.id, note: "channelID required" });
    return;
  }
  const channelType = c.channelType === undefined ? 1 : c.channelType;
  const content = new MessageText(c.text === undefined ? "" : String(c.text));
  const channel = new Channel(c.channelID, channelType);
  const seqBefore = chatManager.clientSeq;
  let p;
  try {
    // The whole body of send() runs synchronously (no await inside), so
    // clientSeq / sendingQueues are updated by the time it returns.
    p = chatManager.send(content, channel);
  } catch (e) {
    emit({ event: "cmdresult", cmd: "send", ok: false, id: c.id, note: String(e.message || e) });
    return;
  }
  const clientSeq = chatManager.clientSeq !== seqBefore ? chatManager.clientSeq : null;
  const queued = clientSeq !== null ? chatManager.sendingQueues.get(clientSeq) : undefined;
  const clientMsgNo = queued ? queued.clientMsgNo : null;
  if (clientSeq !== null) clientMsgNoBySeq.set(clientSeq, clientMsgNo);
  emit({ event: "send", id: c.id, clientSeq, clientMsgNo, channelID: c.channelID, channelType, text: content.text });
  Promise.resolve(p).then(
    () => {},
    (e) => {
      // e.g. not connected yet (no AES key / socket CONNECTING). The packet
      // stays in chatManager.sendingQueues and is re-sent after the next
      // successful CONNACK (flushSendingQueue).
      emit({ event: "senderror", id: c.id, clientSeq, clientMsgNo, message: String(e && e.message ? e.message : e), stillQueued: chatManager.sendingQueues.has(clientSeq) });
    });
}

function doDisconnect() {
  const before = connectManager.status;
  sdk.disconnect();
  // 1.0.4's disconnect() sets status=Disconnect without notifying listeners.
  emit({ event: "status", status: statusName(connectManager.status), statusCode: connectManager.status, reasonCode: 0, synthetic: true, previous: statusName(before) });
}

let exiting = false;
function doExit(code) {
  if (exiting) return;
  exiting = true;
  try {
    sdk.disconnect();
  } catch (e) {
    /* ignore */
  }
  emit({ event: "exit" });
  // The SDK keeps a 2 s setInterval (ReceiptManager) forever, so exit explicitly
  // once stdout has drained.
  const finish = () => process.exit(code || 0);
  if (process.stdout.writableNeedDrain) process.stdout.once("drain", finish);
  else setImmediate(finish);
}

function handleLine(line) {
  line = line.trim();
  if (!line) return;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    emit({ event: "cmdresult", ok: false, note: `bad json: ${e.message}` });
    return;
  }
  switch (c.cmd) {
    case "connect": return doConnect();
    case "send": return doSend(c);
    case "disconnect": return doDisconnect();
    case "status":
      return emit({ event: "cmdresult", cmd: "status", ok: true, status: statusName(connectManager.status), statusCode: connectManager.status });
    case "exit": return doExit(0);
    default:
      return emit({ event: "cmdresult", ok: false, cmd: c.cmd, note: "unknown cmd" });
  }
}

let buf = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    handleLine(line);
  }
});
process.stdin.on("end", () => {
  if (buf) handleLine(buf);
  doExit(0);
});
process.on("SIGTERM", () => doExit(0));
process.on("SIGINT", () => doExit(0));

emit({
  event: "ready",
  sdk: "wukongimjssdk",
  sdkVersion: require("wukongimjssdk/package.json").version,
  protoVersion: sdk.config.protoVersion,
  heartbeatInterval: sdk.config.heartbeatInterval,
  url: opts.url,
  uid: opts.uid,
  deviceFlag: opts.deviceFlag,
});
if (opts.autoConnect) doConnect();
