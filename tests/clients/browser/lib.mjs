// Shared helpers of the browser scenarios: Chromium launch, arguments, step log, screenshots.
//
// Playwright drives Debian's Chromium (/usr/bin/chromium, or $CHROMIUM); it downloads no
// browser. Every launch() gets a fresh temporary profile (Playwright creates a new
// --user-data-dir per launch and deletes it on close), so runs never share state.
// stdout carries one JSON object per line: {"step": ...} while running, then
// {"ok": true|false, ...} last. The exit code is 0 only when every check passed.
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const t0 = Date.now();

export function emit(obj) {
  process.stdout.write(JSON.stringify({ ...obj, t: Date.now() - t0 }) + "\n");
}

export function step(name, extra = {}) {
  emit({ step: name, ...extra });
}

export function parseArgs(argv, required) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--") || i + 1 >= argv.length) throw new Error(`bad argument ${a}`);
    out[a.slice(2)] = argv[++i];
  }
  for (const k of required) if (out[k] === undefined) throw new Error(`--${k} is required`);
  return out;
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60000,
  });
}

export function shooter(dir, prefix) {
  fs.mkdirSync(dir, { recursive: true });
  let n = 0;
  return async (page, name) => {
    n += 1;
    const file = path.join(dir, `${prefix}-${String(n).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    step("screenshot", { file });
    return file;
  };
}

// Collects page errors and console errors so a failure report shows what the page saw.
export function watch(page, label, sink) {
  page.on("pageerror", (e) => sink.push(`${label} pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") sink.push(`${label} console.error: ${m.text()}`);
  });
}

// Runs a scenario; on failure takes a last screenshot of every page given and exits 1.
export async function run(scenario) {
  const logs = [];
  const pages = [];
  let browser;
  try {
    browser = await launch();
    step("browser", { version: browser.version() });
    await scenario({ browser, logs, pages });
    emit({ ok: true, page_logs: logs.slice(-40) });
    await browser.close();
    process.exit(0);
  } catch (err) {
    const shots = [];
    for (const [i, { page, shot }] of pages.entries()) {
      try {
        shots.push(await shot(page, `failure-${i}`));
      } catch (_e) {
        // the page may be gone already
      }
    }
    emit({ ok: false, error: String(err && err.stack ? err.stack : err), page_logs: logs.slice(-40), shots });
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
}

// Polls fn() until it returns something truthy; throws naming `what` after `timeout` ms.
export async function until(what, fn, timeout = 20000, interval = 200) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
}
