// The dashboard in a real headless Chromium, driven by playwright-core. Run by
// crates/warden/tests/dashboard_browser.rs, which starts `warden serve` and the agent and reads
// this script's stdout: `READY` / `VIEWER_READY` ask it for a held call, `PASS <check>` lines
// report what was verified. Any failed check exits non-zero with the reason on stderr.
//
// Env: WARDEN_URL, APPROVER_TOKEN, VIEWER_TOKEN, WARDEN_SCREENSHOTS (a folder), CHROMIUM.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

// axe-core, the accessibility rules engine, run inside each page that is screenshotted.
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
let scanned = 0;

const base = need("WARDEN_URL");
const shots = need("WARDEN_SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const WAIT = 60_000;

function need(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

function fail(message) {
  console.error("FAIL " + message);
  process.exit(1);
}

function pass(check) {
  console.log("PASS " + check);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function shot(page, name) {
  // A value put in the page the wrong way shows as `[object …]`, `undefined` or `null`.
  const text = await page.locator("body").innerText();
  const leaked = text.match(/\[object \w+\]|\bundefined\b|^null$/m);
  check(!leaked, `${name} shows ${leaked && leaked[0]}`);
  await accessible(page, name);
  await page.screenshot({ path: join(shots, name + ".png"), fullPage: true });
}

/** No serious or critical WCAG 2.1 A/AA violation on the page as it stands. */
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: tags } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  }, WCAG);
  for (const v of violations) console.error(`axe ${name}: ${v.id} (${v.impact}) at ${v.nodes.slice(0, 3).join(", ")}`);
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `${name} has accessibility violations: ${bad.map((v) => v.id).join(", ")}`);
  scanned += 1;
}

/** Sign in through the login form, as a person would. */
async function signIn(page, token) {
  await page.goto(base + "/ui/");
  await page.waitForURL("**/ui/login", { timeout: WAIT });
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname === "/ui/", { timeout: WAIT });
  await page.waitForSelector("body[data-live=true]", { timeout: WAIT });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

try {
  // ---- The approver ----
  const approverContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await approverContext.newPage();
  await page.goto(base + "/ui/login");
  await page.getByLabel("Access token").waitFor({ timeout: WAIT });
  await shot(page, "01-login");
  await page.getByLabel("Access token").fill("wk_not_a_key");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "not one of the configured" }).waitFor({ timeout: WAIT });
  pass("a wrong token is refused on the login page");

  await signIn(page, need("APPROVER_TOKEN"));
  const who = await page.locator("#who").textContent();
  check(who.includes("(approver)"), `signed in as ${who}`);
  check(await page.locator("[data-approval-id]").count() === 0, "no held call before the agent's");
  pass("the approver signs in and the page is live");
  // Set on this very document: still there later means the held call arrived without a reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  console.log("READY");

  const card = page.locator("article[data-approval-id]").first();
  await card.waitFor({ timeout: WAIT });
  check(await page.evaluate(() => window.__sameDocument === true), "the page reloaded");
  const heldId = await card.getAttribute("data-approval-id");
  const tool = await card.locator("h3 code").textContent();
  check(tool === "write_file", `held tool ${tool}`);
  check((await card.textContent()).includes("baseline.untrusted-value-in-sink"), "the card shows why it was held");
  // The live region is filled just after the card is drawn: wait for it, not for a fixed time.
  const announcedInTime = await page
    .waitForFunction(() => document.querySelector("#announcer")?.textContent.includes("write_file"), null, { timeout: WAIT })
    .then(() => true, () => false);
  const announced = await page.locator("#announcer").textContent();
  check(announcedInTime, `announced: ${announced}`);
  check(await page.locator("#pending-count").textContent() === "1", "the count shows one held call");
  pass(`the held call ${heldId} appeared live, with its reason, and was announced`);
  await shot(page, "02-approvals-held");

  // A state-changing request without the CSRF token, with the approver's own cookie.
  const noCsrf = await page.evaluate(async (id) => {
    const r = await fetch("/ui/api/approvals/" + id, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ decision: "approve" }),
    });
    return { status: r.status, body: await r.json() };
  }, heldId);
  check(noCsrf.status === 403 && noCsrf.body.error.code === "csrf", `no-CSRF POST: ${JSON.stringify(noCsrf)}`);
  pass("a POST without the CSRF token is refused (403)");

  // Keyboard only: focus the comment, type, Tab to Approve, press Enter.
  await card.getByLabel("Comment").focus();
  await page.keyboard.type("Checked with the finance team by phone");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  check(focused === "Approve", `Tab from the comment reaches ${focused}`);
  await page.keyboard.press("Enter");
  await card.waitFor({ state: "detached", timeout: WAIT });
  const decided = page.locator(`#decided tr[data-approval-id="${heldId}"]`);
  await decided.waitFor({ timeout: WAIT });
  const row = await decided.textContent();
  check(row.includes("approved") && row.includes("dana"), `decided row: ${row}`);
  pass("approved from the keyboard with a comment; recorded as dana");
  console.log("APPROVED " + heldId);

  // The session's timeline: the agent's call completes (its result arrives live) and the
  // audit trail shows the approval.
  const session = heldId.split("/")[0];
  await page.locator(`#decided tr[data-approval-id="${heldId}"] a`).click();
  await page.waitForURL("**#session/" + session, { timeout: WAIT });
  const written = page.locator("li[data-kind=result]").filter({ hasText: "write_file" });
  await written.waitFor({ timeout: WAIT });
  check((await written.textContent()).includes("Successfully wrote"), "the write's result is shown");
  const trail = page.locator("#audit-trail tr[data-kind=approval]");
  await trail.waitFor({ timeout: WAIT });
  const trailText = await trail.textContent();
  check(trailText.includes("approved") && trailText.includes("by dana") && trailText.includes("finance team"), `audit trail: ${trailText}`);
  const held = page.locator("li[data-kind=call]").filter({ hasText: "write_file" }).first();
  // The argument's provenance names the step it came from; following it lands on the file's text.
  const source = held.locator(".prov li").filter({ hasText: "path" }).getByRole("button").last();
  const sourceName = await source.textContent();
  check(/^step #\d+$/.test(sourceName), `the path's source is named: ${sourceName}`);
  await source.click();
  const landed = await page.evaluate(() => document.activeElement && document.activeElement.dataset.kind);
  check(landed === "result", `following the provenance link lands on a ${landed}`);
  const links = await page.locator(".timeline-wrap svg path").count();
  check(links > 0, "provenance links are drawn");
  pass(`the agent's call completed and the audit trail names the approver (${links} provenance links drawn)`);
  await shot(page, "03-session-timeline");

  for (const [view, name, ready] of [
    ["sessions", "04-sessions", "#session-results table"],
    ["alerts", "05-alerts", 'main h1:has-text("Alerts")'],
    ["audit", "06-audit", "#audit-entries"],
    ["policy", "07-policy", 'main h1:has-text("Policy in force")'],
  ]) {
    await page.goto(base + "/ui/#" + view);
    await page.locator(ready).first().waitFor({ timeout: WAIT });
    await shot(page, name);
  }
  await page.goto(base + "/ui/#audit");
  await page.getByRole("button", { name: "Verify the whole log now" }).click();
  await page.locator("#verify-result .badge").waitFor({ timeout: WAIT });
  const verified = await page.locator("#verify-result").textContent();
  check(verified.includes("verified"), `verification: ${verified}`);
  pass("the audit page verifies the log");
  await shot(page, "06-audit");

  // ---- The viewer ----
  const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const viewer = await viewerContext.newPage();
  await signIn(viewer, need("VIEWER_TOKEN"));
  check((await viewer.locator("#who").textContent()).includes("(viewer)"), "signed in as viewer");
  console.log("VIEWER_READY");
  const seen = viewer.locator("article[data-approval-id]").first();
  await seen.waitFor({ timeout: WAIT });
  const secondId = await seen.getAttribute("data-approval-id");
  check(await seen.getByRole("button", { name: "Approve" }).count() === 0, "a viewer sees no Approve button");
  check(await seen.getByRole("button", { name: "Deny" }).count() === 0, "a viewer sees no Deny button");
  check((await seen.textContent()).includes("signed in as a viewer"), "the card says why");
  pass("a viewer sees the held call live but no approve or deny control");
  await shot(viewer, "08-viewer-approvals");

  const forged = await viewer.evaluate(async (id) => {
    const me = await (await fetch("/ui/api/me")).json();
    const r = await fetch("/ui/api/approvals/" + id, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Warden-CSRF": me.csrf },
      body: JSON.stringify({ decision: "approve", comment: "forged" }),
    });
    return { status: r.status, body: await r.json() };
  }, secondId);
  check(forged.status === 403 && forged.body.error.code === "forbidden", `viewer POST: ${JSON.stringify(forged)}`);
  pass("a viewer's forged approve, with a valid cookie and CSRF token, is refused (403)");
  console.log("VIEWER_REFUSED " + secondId);

  // Signing out ends the sign-in: the cookie no longer opens anything, and another tab of the
  // same sign-in, live on its event stream, goes to the sign-in page by itself.
  const otherTab = await viewerContext.newPage();
  await otherTab.goto(base + "/ui/#sessions");
  await otherTab.waitForFunction(() => document.body.dataset.live === "true", null, { timeout: WAIT });
  await viewer.getByRole("button", { name: "Sign out" }).click();
  await viewer.waitForURL("**/ui/login", { timeout: WAIT });
  const after = await viewer.evaluate(async () => (await fetch("/ui/api/me")).status);
  check(after === 401, `after sign-out: ${after}`);
  await otherTab.waitForURL("**/ui/login", { timeout: WAIT });
  pass("signing out ends the session, in every tab");
  pass(`no serious or critical WCAG 2.1 AA violation (axe-core) on ${scanned} page views`);
} catch (e) {
  console.error("FAIL " + (e && e.stack ? e.stack : String(e)));
  process.exitCode = 1;
} finally {
  await browser.close();
}
if (!process.exitCode) console.log("DONE");
