#!/usr/bin/env node
// Browser scenario: the web manager (api/static/manager/) of a running cluster.
//
//   node manager.mjs --url http://127.0.0.1:5300 --token T --shots DIR --nodes 3
//                    --conn-node 2 --conn-uid U --channel G --message TEXT --min-in 5
//
// A wrong token gives a visible 401 error; the right one opens the overview with every
// node healthy and exactly one controller, node 2 counting at least 5 messages in with
// a rate above 0 (U sent them just before); node 2's connections list uid U; looking up
// group G shows its subscribers and its newest messages, TEXT among them.
import { parseArgs, run, shooter, step, until, watch } from "./lib.mjs";

const args = parseArgs(process.argv.slice(2), ["url", "token", "shots", "nodes", "conn-node", "conn-uid", "channel",
                                               "message", "min-in"]);
const nodes = parseInt(args.nodes, 10);

await run(async ({ browser, logs, pages }) => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const shot = shooter(args.shots, "manager");
  pages.push({ page, shot });
  watch(page, "manager", logs);

  // ---- login: a wrong token is refused with a clear error, the right one is accepted
  await page.goto(args.url);
  await page.locator("#login-form").waitFor();
  await shot(page, "login");
  await page.fill("#token", args.token + "-wrong");
  await page.click("#login-button");
  const err = page.locator("#error");
  await err.waitFor({ state: "visible" });
  const errText = await err.textContent();
  if (!/401/.test(errText)) throw new Error(`expected a 401 error, got: ${errText}`);
  step("wrong token refused", { error: errText });
  await shot(page, "login-401");

  await page.fill("#token", args.token);
  await page.click("#login-button");
  await page.locator("#overview-page").waitFor({ state: "visible" });
  const stored = await page.evaluate(() => sessionStorage.getItem("skein.managerToken"));
  if (stored !== args.token) throw new Error("the token is not kept in sessionStorage");
  step("logged in");

  // ---- overview: every node, all healthy, exactly one controller
  const overview = await until(`${nodes} healthy nodes and one controller on the overview`, async () => {
    const rows = await page.locator("#nodes-table tbody tr").count();
    const healthy = await page.locator("#nodes-table tbody tr span.healthy").count();
    const controllers = await page.locator("#nodes-table tbody .badge.controller").count();
    const controller = await page.textContent("#ov-controller");
    return rows === nodes && healthy === nodes && controllers === 1 && /^node \d+$/.test(controller)
      ? { rows, healthy, controller, slots: await page.textContent("#ov-slots") } : null;
  }, 30000);
  step("overview", overview);
  const minIn = parseInt(args["min-in"], 10);
  if (minIn > 0) {
    const row = page.locator(`#nodes-table tbody tr[data-node="${args["conn-node"]}"]`);
    const traffic = await until(`node ${args["conn-node"]} counting the messages its client sent`, async () => {
      const sent = parseInt(await row.locator("td.in-total").textContent(), 10);
      const rate = parseFloat(await row.locator("td.in-rate").textContent());
      return sent >= minIn && rate > 0 ? { sent, rate } : null;
    });
    step("message counters", traffic);
  }
  await shot(page, "overview");

  // ---- connections of one node, filtered by uid
  await page.click("#nav button[data-page=connections]");
  await page.locator("#connections-page").waitFor({ state: "visible" });
  await until("the node selector", async () => (await page.locator("#conn-node option").count()) === nodes);
  await page.selectOption("#conn-node", args["conn-node"]);
  await page.fill("#conn-uid", args["conn-uid"]);
  await page.click("#conn-form button[type=submit]");
  const conn = await until(`a connection of ${args["conn-uid"]} on node ${args["conn-node"]}`, async () => {
    const uids = await page.locator("#conn-table tbody td.uid").allTextContents();
    return uids.includes(args["conn-uid"]) ? { uids, range: await page.textContent("#conn-range") } : null;
  });
  step("connections", conn);
  await shot(page, "connections");

  // ---- channel lookup and its newest messages
  await page.click("#nav button[data-page=channels]");
  await page.fill("#chan-id", args.channel);
  await page.selectOption("#chan-type", "2");
  await page.click("#chan-form button[type=submit]");
  await page.locator("#msg-table").waitFor({ state: "visible" });
  const found = await until(`message "${args.message}" in channel ${args.channel}`, async () => {
    const info = await page.textContent("#chan-info");
    const contents = await page.locator("#msg-table tbody td.content").allTextContents();
    return info.includes("Found") && contents.includes(args.message) ? { info, contents } : null;
  });
  if (!/Foundyes/.test(found.info.replace(/\s+/g, ""))) throw new Error(`channel not found: ${found.info}`);
  step("channel", found);
  await shot(page, "channel");
});
