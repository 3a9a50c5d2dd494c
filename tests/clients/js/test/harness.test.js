// Self-test of the harness: the real wukongimjssdk 1.0.4 (via driver.js)
// against the fake server in capture.js. Run: npm test (after npm ci && npm run build).
"use strict";

const test = require("node:test");
const assert = require("node:assert");
const path = require("path");
const { spawn } = require("child_process");
const { startFakeServer } = require("../capture.js");

const DRIVER = path.join(__dirname, "..", "driver.js");

function startDriver(args) {
  const child = spawn(process.execPath, [DRIVER, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const events = [];
  const waiters = [];
  let buf = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const ev = JSON.parse(line); // stdout must be pure JSON lines
      events.push(ev);
      for (const w of [...waiters]) if (w.pred(ev)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(ev); }
    }
  });
  child.stderr.resume();
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    events,
    exited,
    cmd: (o) => child.stdin.write(JSON.stringify(o) + "\n"),
    waitFor: (pred, ms = 5000) => {
      const hit = events.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`timeout; events so far: ${JSON.stringify(events)}`)), ms).unref();
      });
    },
    kill: () => child.kill("SIGKILL"),
  };
}

test("connect, send, sendack, echoed RECV, clean exit", async () => {
  const srv = startFakeServer({ reply: "ok" });
  const port = await srv.ready;
  const d = startDriver(["--url", `ws://127.0.0.1:${port}`, "--uid", "u1", "--token", "t1"]);
  try {
    await d.waitFor((e) => e.event === "ready");
    d.cmd({ cmd: "connect" });
    const st = await d.waitFor((e) => e.event === "status");
    assert.strictEqual(st.status, "Connected");
    assert.strictEqual(st.reasonCode, 1);
    d.cmd({ cmd: "send", channelID: "u2", channelType: 1, text: "héllo 👋", id: "m1" });
    const sent = await d.waitFor((e) => e.event === "send" && e.id === "m1");
    assert.match(sent.clientMsgNo, /^[0-9a-f]{32}3$/);
    const ack = await d.waitFor((e) => e.event === "sendack");
    assert.strictEqual(ack.reasonCode, 1);
    assert.strictEqual(ack.clientSeq, sent.clientSeq);
    assert.strictEqual(ack.clientMsgNo, sent.clientMsgNo);
    assert.match(ack.messageID, /^\d+$/);
    const msg = await d.waitFor((e) => e.event === "message");
    assert.strictEqual(msg.text, "héllo 👋");
    assert.strictEqual(msg.contentType, 1);
    assert.strictEqual(msg.clientMsgNo, sent.clientMsgNo);
    d.cmd({ cmd: "exit" });
    assert.strictEqual(await d.exited, 0);
    const connect = srv.records.find((r) => r.dir === "in" && r.frames[0].type === "CONNECT").frames[0];
    assert.strictEqual(connect.version, 2);
    assert.strictEqual(connect.deviceFlag, 1);
    assert.match(connect.deviceID, /^[0-9a-f]{32}W$/);
    assert.strictEqual(connect.clientKeyRawLen, 32);
    assert.ok(srv.records.some((r) => r.dir === "in" && r.frames.some((f) => f.type === "RECVACK")));
  } finally {
    d.kill();
    await srv.close();
  }
});

test("CONNACK reason != 1 -> ConnectFail, no reconnect", async () => {
  const srv = startFakeServer({ reply: "fail", reason: 2, closeAfter: 200 });
  const port = await srv.ready;
  const d = startDriver(["--url", `ws://127.0.0.1:${port}`, "--uid", "u1", "--token", "bad", "--auto-connect"]);
  try {
    const st = await d.waitFor((e) => e.event === "status");
    assert.strictEqual(st.status, "ConnectFail");
    assert.strictEqual(st.reasonCode, 2);
    const st2 = await d.waitFor((e) => e.event === "status" && e.status === "Disconnect");
    assert.strictEqual(st2.reasonCode, 0);
    await new Promise((r) => setTimeout(r, 3600)); // reconnect delay is 3 s
    assert.strictEqual(srv.records.filter((r) => r.what === "open").length, 1);
    d.cmd({ cmd: "exit" });
    assert.strictEqual(await d.exited, 0);
  } finally {
    d.kill();
    await srv.close();
  }
});

test("unreachable server: Disconnect status lines, exit on command", async () => {
  const d = startDriver(["--url", "ws://127.0.0.1:9", "--uid", "u1", "--token", "t1"]);
  try {
    await d.waitFor((e) => e.event === "ready");
    d.cmd({ cmd: "connect" });
    const st = await d.waitFor((e) => e.event === "status");
    assert.strictEqual(st.status, "Disconnect");
    d.cmd({ cmd: "exit" });
    assert.strictEqual(await d.exited, 0);
  } finally {
    d.kill();
  }
});
