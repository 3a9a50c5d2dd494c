// Skein web manager: plain JS, no framework, no build step.
// The manager token lives in sessionStorage and goes out as the `token` header on every call.
"use strict";

const TOKEN_KEY = "skein.managerToken";
const PAGE_SIZE = 20;
const $ = (sel) => document.querySelector(sel);

const state = { page: "overview", overview: null, connOffset: 0, connTotal: 0, timer: null };

class AuthError extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { token: token() || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_e) {
    data = text;
  }
  if (resp.status === 401) {
    throw new AuthError("The server refused the manager token (401 Unauthorized). Check the token and log in again.");
  }
  if (!resp.ok) {
    const why = data && typeof data === "object" ? data.msg || data.error || data.title : text;
    throw new Error(`${method} ${path} failed: HTTP ${resp.status}${why ? ": " + why : ""}`);
  }
  return data;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function handle(err) {
  if (err instanceof AuthError) {
    logout();
    showError(err.message);
    return;
  }
  showError(err.message || String(err));
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

function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "-";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${m}m` : `${m}m${s % 60}s`;
}

function dash(v) {
  return v === null || v === undefined ? "-" : String(v);
}

// ------------------------------------------------------------------ login
async function login(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  showError("");
  try {
    await api("/manager/overview");
  } catch (err) {
    handle(err);
    return;
  }
  $("#login-page").hidden = true;
  $("#nav").hidden = false;
  show("overview");
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  state.timer = null;
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  $("#nav").hidden = true;
  $("#login-page").hidden = false;
  $("#token").value = "";
}

function show(page) {
  state.page = page;
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== `${page}-page`;
  for (const b of document.querySelectorAll("#nav button[data-page]")) b.classList.toggle("active", b.dataset.page === page);
  clearInterval(state.timer);
  state.timer = null;
  if (page === "overview") {
    refreshOverview();
    state.timer = setInterval(refreshOverview, 3000);
  } else if (page === "connections") {
    fillNodeSelect().then(() => loadConnections(0));
  }
}

// ------------------------------------------------------------------ overview
async function refreshOverview() {
  let ov;
  try {
    ov = await api("/manager/overview");
  } catch (err) {
    handle(err);
    return;
  }
  showError("");
  state.overview = ov;
  const status = $("#ov-status");
  status.textContent = ov.status;
  status.className = ov.status;
  $("#ov-controller").textContent = ov.controller === null ? "none" : `node ${ov.controller}`;
  $("#ov-nodes").textContent = String(ov.nodes.length);
  $("#ov-slots").textContent = `${ov.slots.with_live_leader} / ${ov.slots.total}`;
  $("#ov-conns").textContent = String(ov.totals.connections);
  $("#ov-rates").textContent = `${ov.totals.in_rate} / ${ov.totals.out_rate}`;
  $("#ov-offline").textContent = ov.offline.length ? ov.offline.join(", ") : "none";
  $("#ov-updated").textContent = new Date().toLocaleTimeString();
  const body = $("#nodes-table tbody");
  body.replaceChildren(...ov.nodes.map((n) => {
    const role = n.controller ? el("span", { class: "badge controller" }, "controller") : el("span", { class: "badge" }, "member");
    const health = el("span", { class: n.health, title: (n.health_reasons || []).join("; ") || n.stats_error || "" },
      n.health + (n.draining ? " (draining)" : ""));
    return el("tr", { "data-node": n.id },
      el("td", {}, `node ${n.id}`), el("td", {}, role), el("td", {}, health),
      el("td", {}, n.reachable ? `yes (${n.rtt_ms} ms)` : "no"),
      el("td", { class: "slots-led" }, dash(n.slots_led)), el("td", {}, dash(n.slot_replicas)),
      el("td", { class: "conns" }, dash(n.connections)), el("td", {}, dash(n.users)),
      el("td", { class: "in-total" }, dash(n.messages_in_total)), el("td", { class: "out-total" }, dash(n.messages_out_total)),
      el("td", { class: "in-rate" }, dash(n.in_rate)), el("td", { class: "out-rate" }, dash(n.out_rate)),
      el("td", {}, fmtDuration(n.uptime_s)), el("td", {}, fmtBytes(n.mem_bytes)), el("td", {}, dash(n.api_url)));
  }));
}

// ------------------------------------------------------------------ connections
async function fillNodeSelect() {
  const select = $("#conn-node");
  if (select.options.length) return;
  try {
    const ov = state.overview || (await api("/manager/overview"));
    for (const n of ov.nodes) select.append(el("option", { value: n.id }, `node ${n.id}`));
    select.value = String(ov.node_id);
  } catch (err) {
    handle(err);
  }
}

async function loadConnections(offset) {
  const params = new URLSearchParams({ offset: String(Math.max(0, offset)), limit: String(PAGE_SIZE) });
  if ($("#conn-node").value) params.set("node_id", $("#conn-node").value);
  const uid = $("#conn-uid").value.trim();
  if (uid) params.set("uid", uid);
  let page;
  try {
    page = await api(`/connz?${params}`);
  } catch (err) {
    handle(err);
    return;
  }
  showError("");
  state.connOffset = page.offset;
  state.connTotal = page.total;
  const last = Math.min(page.offset + page.connections.length, page.total);
  $("#conn-range").textContent = page.total ? `${page.offset + 1}-${last} of ${page.total}` : "no connections";
  $("#conn-prev").disabled = page.offset === 0;
  $("#conn-next").disabled = last >= page.total;
  $("#conn-table tbody").replaceChildren(...page.connections.map((c) => el("tr", {},
    el("td", {}, String(c.id)), el("td", { class: "uid" }, c.uid), el("td", {}, `${c.ip}:${c.port}`),
    el("td", {}, c.device.replace("(主)", " (master)").replace("(从)", " (slave)")), el("td", {}, c.transport),
    el("td", {}, String(c.version)), el("td", {}, c.uptime),
    el("td", {}, c.idle), el("td", {}, String(c.in_msgs)), el("td", {}, String(c.out_msgs)))));
}

// ------------------------------------------------------------------ channels and messages
function decodePayload(b64) {
  let text;
  try {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    text = new TextDecoder().decode(bytes);
  } catch (_e) {
    return `(${b64.length} base64 chars)`;
  }
  try {
    const obj = JSON.parse(text);
    if (obj && typeof obj === "object" && typeof obj.content === "string") return obj.content;
    return JSON.stringify(obj);
  } catch (_e) {
    return text;
  }
}

async function lookupChannel() {
  const cid = $("#chan-id").value.trim();
  const ctype = parseInt($("#chan-type").value, 10);
  const loginUid = $("#chan-login").value.trim();
  const params = new URLSearchParams({ channel_id: cid, channel_type: String(ctype) });
  if (loginUid) params.set("login_uid", loginUid);
  let info, sync;
  try {
    info = await api(`/manager/channel?${params}`);
    sync = await api("/channel/messagesync", {
      method: "POST",
      body: { login_uid: loginUid || "____manager", channel_id: cid, channel_type: ctype, start_message_seq: 0,
              end_message_seq: 0, limit: 50, pull_mode: 0 },
    }).catch((err) => {
      if (err instanceof AuthError) throw err;
      return { messages: [], error: err.message };
    });
  } catch (err) {
    handle(err);
    return;
  }
  showError("");
  const box = $("#chan-info");
  const rows = [["Channel", `${info.channel_id} (type ${info.channel_type})`], ["Stored as", info.storage_id],
    ["Found", info.found ? "yes" : "no"], ["Slot", `${info.slot} (leader node ${dash(info.leader)})`]];
  if (info.info) {
    rows.push(["Last seq", String(info.last_seq)], ["Flags", JSON.stringify(info.info)],
      ["Subscribers", `${info.subscriber_count}: ${info.subscribers.join(", ")}`],
      ["Deny list", info.deny.join(", ") || "-"], ["Allow list", info.allow.join(", ") || "-"]);
  }
  if (sync.error) rows.push(["Messages", sync.error]);
  box.replaceChildren(el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  box.hidden = false;
  const msgs = [...sync.messages].sort((a, b) => b.message_seq - a.message_seq);
  $("#chan-msgs-title").hidden = false;
  $("#msg-table").hidden = false;
  $("#msg-table tbody").replaceChildren(...msgs.map((m) => el("tr", {},
    el("td", {}, String(m.message_seq)), el("td", {}, m.message_idstr || String(m.message_id)),
    el("td", {}, m.from_uid || "(system)"), el("td", {}, new Date(m.timestamp * 1000).toLocaleString()),
    el("td", { class: "content" }, decodePayload(m.payload)))));
}

// ------------------------------------------------------------------ wiring
$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  login($("#token").value);
});
$("#logout").addEventListener("click", () => {
  logout();
  showError("");
});
for (const b of document.querySelectorAll("#nav button[data-page]")) b.addEventListener("click", () => show(b.dataset.page));
$("#conn-form").addEventListener("submit", (e) => {
  e.preventDefault();
  loadConnections(0);
});
$("#conn-node").addEventListener("change", () => loadConnections(0));
$("#conn-prev").addEventListener("click", () => loadConnections(state.connOffset - PAGE_SIZE));
$("#conn-next").addEventListener("click", () => loadConnections(state.connOffset + PAGE_SIZE));
$("#chan-form").addEventListener("submit", (e) => {
  e.preventDefault();
  lookupChannel();
});

if (token() !== null) login(token());
