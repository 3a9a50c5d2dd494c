#!/usr/bin/env node
// Browser scenario: the demo chat page (api/static/demo/) with the official JS SDK.
//
//   node demo.mjs --url-a http://127.0.0.1:5172 --url-b http://127.0.0.1:5173 --shots DIR
//                 --uid-a alice --uid-b bob --group g1
//
// Two browser contexts (separate sessions, possibly on different nodes) log in as A and
// B, chat 1:1 both ways (each sees the other's text, each send is acknowledged), then A
// creates a group with B and both see each other's group messages.
import { parseArgs, run, shooter, step, until, watch } from "./lib.mjs";

const args = parseArgs(process.argv.slice(2), ["url-a", "url-b", "shots", "uid-a", "uid-b", "group"]);
const A = args["uid-a"];
const B = args["uid-b"];
const G = args.group;

async function user(browser, url, uid, label, logs, pages) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  const shot = shooter(args.shots, `demo-${label}`);
  pages.push({ page, shot });
  watch(page, uid, logs);
  await page.goto(url);
  await page.fill("#login-uid", uid);
  await page.click("#login-button");
  await page.locator("#chat-page").waitFor({ state: "visible" });
  await until(`${uid} connected`, async () => (await page.textContent("#conn-status")) === "connected");
  step("logged in", { uid });
  return { page, shot, uid };
}

// Sends text in the open conversation and waits for its SENDACK ("sent ✓").
async function send(u, text) {
  await u.page.fill("#text", text);
  await u.page.click("#send");
  const mine = u.page.locator("#messages li.msg.mine", { hasText: text });
  await until(`${u.uid}'s "${text}" acknowledged`, async () => {
    const state = await mine.locator(".state").textContent();
    if (/failed/.test(state)) throw new Error(`send failed: ${state}`);
    return state === "sent ✓";
  });
  step("sent", { uid: u.uid, text });
}

// Waits for the conversation `key` to appear (an incoming message), opens it, finds text from `from`.
async function receive(u, key, from, text) {
  const item = u.page.locator(`#convs li[data-key="${key}"]`);
  await item.waitFor({ timeout: 20000 });
  await item.click();
  const msg = u.page.locator(`#messages li.msg[data-from="${from}"]`, { hasText: text });
  await msg.waitFor({ timeout: 20000 });
  step("received", { uid: u.uid, from, text });
}

await run(async ({ browser, logs, pages }) => {
  const a = await user(browser, args["url-a"], A, "a", logs, pages);
  const b = await user(browser, args["url-b"], B, "b", logs, pages);
  await a.shot(a.page, "logged-in");

  // ---- 1:1, both ways
  await a.page.fill("#peer-uid", B);
  await a.page.click("#open-person");
  const hello = `hello ${B}, this is ${A}`;
  await send(a, hello);
  await receive(b, `1:${A}`, A, hello);
  const reply = `hi ${A}, ${B} here`;
  await send(b, reply);
  await a.page.locator(`#messages li.msg[data-from="${B}"]`, { hasText: reply }).waitFor({ timeout: 20000 });
  step("received", { uid: A, from: B, text: reply });
  await a.shot(a.page, "person");
  await b.shot(b.page, "person");

  // ---- group with both
  await a.page.fill("#group-id", G);
  await a.page.fill("#group-members", B);
  await a.page.click("#open-group");
  await a.page.locator("#chat-title", { hasText: `Group ${G}` }).waitFor();
  const groupHello = `welcome to ${G}`;
  await send(a, groupHello);
  await receive(b, `2:${G}`, A, groupHello);
  const groupReply = `thanks, ${B} in ${G}`;
  await send(b, groupReply);
  await a.page.locator(`#messages li.msg[data-from="${B}"]`, { hasText: groupReply }).waitFor({ timeout: 20000 });
  step("received", { uid: A, from: B, text: groupReply });
  await a.shot(a.page, "group");
  await b.shot(b.page, "group");
});
