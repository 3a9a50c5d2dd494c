// Skein demo chat: the official WuKongIM JS SDK (wukongimjssdk 1.0.4, global WKJS from
// /static/vendor/wkjs.js, built at install time) in the browser, plus the demo server's
// /demo/login, /demo/group and /demo/history calls. No framework, no build step here.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PERSON = 1;
const GROUP = 2;
const STATUS_NAMES = { 0: "disconnected (reconnecting)", 1: "connected", 2: "connecting", 3: "connect failed", 4: "kicked" };

const state = {
  uid: null,
  sdk: null,
  convs: new Map(),   // key "type:id" -> {id, type, messages: [], unread}
  current: null,      // key of the open conversation
  pending: new Map(), // clientSeq -> message object awaiting its SENDACK
};

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c === null || c === undefined ? "" : c);
  return node;
}

async function post(path, body) {
  const resp = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                   body: JSON.stringify(body) });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}${data && data.msg ? ": " + data.msg : ""}`);
  return data;
}

function keyOf(id, type) {
  return `${type}:${id}`;
}

function conv(id, type) {
  const key = keyOf(id, type);
  if (!state.convs.has(key)) state.convs.set(key, { id, type, messages: [], unread: 0 });
  return state.convs.get(key);
}

function idString(v) {
  if (v === undefined || v === null) return null;
  return typeof v === "object" && typeof v.toString === "function" ? v.toString(10) : String(v);
}

// ------------------------------------------------------------------ rendering
function renderConvs() {
  const items = [...state.convs.entries()].map(([key, c]) => {
    const label = c.type === GROUP ? `# ${c.id}` : c.id;
    const li = el("li", { "data-key": key, class: key === state.current ? "active" : "" }, el("span", {}, label),
      c.unread ? el("span", { class: "unread" }, String(c.unread)) : "");
    li.addEventListener("click", () => openConv(c.id, c.type));
    return li;
  });
  $("#convs").replaceChildren(...items);
}

function stateText(m) {
  if (!m.mine) return "";
  if (m.reason === undefined) return "sending…";
  return m.reason === 1 ? "sent ✓" : `failed (reason ${m.reason})`;
}

function renderMessages() {
  const c = state.current && state.convs.get(state.current);
  if (!c) return;
  const list = $("#messages");
  list.replaceChildren(...c.messages.map((m) => el("li", { class: m.mine ? "msg mine" : "msg", "data-from": m.from },
    el("div", { class: "from" }, m.mine ? "me" : m.from),
    el("span", { class: "text" }, m.text),
    el("span", { class: m.reason !== undefined && m.reason !== 1 ? "state failed" : "state" }, stateText(m)))));
  list.scrollTop = list.scrollHeight;
}

function addMessage(c, m) {
  if (m.id && c.messages.some((x) => x.id === m.id)) return;
  c.messages.push(m);
  const order = (x) => x.seq || Number.MAX_SAFE_INTEGER; // not yet acknowledged: last
  c.messages.sort((a, b) => order(a) - order(b));
  if (keyOf(c.id, c.type) === state.current) renderMessages();
  else if (!m.mine) c.unread++;
  renderConvs();
}

// ------------------------------------------------------------------ conversations
async function openConv(id, type) {
  const c = conv(id, type);
  state.current = keyOf(id, type);
  c.unread = 0;
  $("#chat-title").textContent = type === GROUP ? `Group ${id}` : `Chat with ${id}`;
  $("#composer").hidden = false;
  renderConvs();
  renderMessages();
  try {
    const hist = await post("/demo/history", { uid: state.uid, channel_id: id, channel_type: type, limit: 50 });
    for (const r of hist.messages) {
      let text;
      try {
        const bytes = Uint8Array.from(atob(r.payload), (ch) => ch.charCodeAt(0));
        const obj = JSON.parse(new TextDecoder().decode(bytes));
        text = typeof obj.content === "string" ? obj.content : JSON.stringify(obj);
      } catch (_e) {
        text = "(not a text message)";
      }
      const mine = r.from_uid === state.uid;
      addMessage(c, { id: r.message_idstr, seq: r.message_seq, from: r.from_uid, text, mine, reason: mine ? 1 : undefined });
    }
  } catch (err) {
    showError(`history: ${err.message}`);
  }
}

// ------------------------------------------------------------------ SDK
function startSdk(login) {
  if (!window.WKJS) throw new Error("the JS SDK bundle /static/vendor/wkjs.js is missing (run `make install`)");
  const { WKSDK, MessageStatus } = window.WKJS;
  const sdk = WKSDK.shared();
  sdk.config.addr = login.wsAddr;
  sdk.config.uid = login.uid;
  sdk.config.token = login.token;
  sdk.config.deviceFlag = 1;
  sdk.connectManager.addConnectStatusListener((status, reasonCode) => {
    const box = $("#conn-status");
    let text = STATUS_NAMES[status] || `status ${status}`;
    if (status === 3 || status === 4) text += ` (reason ${reasonCode})`;
    box.textContent = text;
    box.className = status === 1 ? "status connected" : status === 3 || status === 4 ? "status failed" : "status";
  });
  sdk.chatManager.addMessageListener((msg) => {
    const outgoing = msg.status === MessageStatus.Wait && msg.messageID === undefined;
    const ch = msg.channel;
    const peer = ch.channelType === PERSON && msg.fromUID !== state.uid ? msg.fromUID : ch.channelID;
    const c = conv(ch.channelType === PERSON ? peer : ch.channelID, ch.channelType);
    const content = msg.content || {};
    const text = content.text !== undefined ? content.text : `(content type ${msg.contentType})`;
    const m = { id: outgoing ? null : idString(msg.messageID), seq: msg.messageSeq || 0, from: msg.fromUID, text,
                mine: msg.fromUID === state.uid };
    if (outgoing) state.pending.set(msg.clientSeq, m);
    else if (m.mine) m.reason = 1;
    addMessage(c, m);
  });
  sdk.chatManager.addMessageStatusListener((ack) => {
    const m = state.pending.get(ack.clientSeq);
    if (!m) return;
    state.pending.delete(ack.clientSeq);
    m.reason = ack.reasonCode;
    m.id = idString(ack.messageID);
    m.seq = ack.messageSeq || m.seq;
    renderMessages();
  });
  $("#conn-status").textContent = "connecting";
  sdk.connect();
  state.sdk = sdk;
}

// ------------------------------------------------------------------ actions
async function login(uid) {
  showError("");
  let got;
  try {
    got = await post("/demo/login", { uid });
    startSdk(got);
  } catch (err) {
    showError(err.message);
    return;
  }
  state.uid = got.uid;
  $("#me-uid").textContent = got.uid;
  $("#me").hidden = false;
  $("#login-page").hidden = true;
  $("#chat-page").hidden = false;
}

function send(text) {
  const c = state.current && state.convs.get(state.current);
  if (!c || !state.sdk) return;
  const { Channel, MessageText } = window.WKJS;
  state.sdk.chatManager.send(new MessageText(text), new Channel(c.id, c.type)).catch((err) => {
    showError(`send failed: ${err && err.message ? err.message : err}`);
  });
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  login($("#login-uid").value.trim());
});
$("#person-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const peer = $("#peer-uid").value.trim();
  if (peer) openConv(peer, PERSON);
});
$("#group-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const gid = $("#group-id").value.trim();
  const members = $("#group-members").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    await post("/demo/group", { group_id: gid, members: [state.uid, ...members] });
  } catch (err) {
    showError(err.message);
    return;
  }
  showError("");
  openConv(gid, GROUP);
});
$("#composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("#text");
  const text = input.value;
  if (!text) return;
  input.value = "";
  send(text);
});
