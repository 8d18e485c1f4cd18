// The web pages in a real browser: Debian's chromium, headless, driven by
// playwright-core against the real `reservations` binary on loopback (memory
// store). Run by CTest (label `browser`); the environment names the binary
// (RSV_BINARY), the built pages (RSV_WEB_ROOT), web/ with its node_modules
// (RSV_WEB_SOURCE) and where the screenshots go (RSV_SCREENSHOT_DIR).
//
// What a user would notice: an operator creates an event with the form; a
// buyer registers, holds and books two seats while a second browser sees
// them turn booked within 2 seconds; a hold's countdown reaches zero and its
// seats turn free; a seat taken first by someone else gives a clear message
// and the page goes on working; the map is driven by keyboard; the page fits
// a phone's width; cancelling frees the seats; with Redis, the waiting room
// shows a live position and admits the buyer to hold. Every wait has a
// deadline.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (CTest sets it)`);
  return value;
};
const binary = env("RSV_BINARY");
const webRoot = env("RSV_WEB_ROOT");
const webSource = env("RSV_WEB_SOURCE");
const screenshots = env("RSV_SCREENSHOT_DIR");
const chromiumPath = process.env.RSV_CHROMIUM ?? "/usr/bin/chromium";
const { chromium } = createRequire(join(webSource, "package.json"))("playwright-core");

const RUN_DEADLINE_MS = 120_000;
const adminToken = "browser-test-admin-token-0123456789abcdef";
const password = "correct horse battery";
const started = Date.now();
const log = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);

// -- the server -----------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function waitUntil(what, deadlineMs, check) {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts the server on a fresh port (a few tries if a port was taken meanwhile). */
async function startServer(extraArgs = []) {
  const logDir = mkdtempSync(join(tmpdir(), "rsv-browser-"));
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const logPath = join(logDir, `server-${attempt}.log`);
    const out = openSync(logPath, "w");
    const child = spawn(
      binary,
      [
        "serve",
        "--listen", `127.0.0.1:${port}`,
        "--store", "memory",
        "--admin-token", adminToken,
        "--web-root", webRoot,
        // Cheap hashing: the test registers a handful of customers.
        "--password-hash-memory-kib", "1024",
        "--password-hash-ops", "1",
        "--log-level", "warn",
        ...extraArgs,
      ],
      { stdio: ["ignore", out, out] },
    );
    let exited = false;
    child.once("exit", () => (exited = true));
    try {
      await waitUntil("the server's /ready", 15_000, async () => {
        if (exited) return true;
        try {
          return (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200;
        } catch {
          return false;
        }
      });
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
    if (!exited) return { child, base: `http://127.0.0.1:${port}`, port, logPath };
    log(`server attempt ${attempt} exited: ${readFileSync(logPath, "utf8").slice(-500)}`);
  }
  throw new Error("the server did not start");
}

/** A private redis-server on a free loopback port, for the waiting room. */
async function startRedis() {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  await waitUntil("redis-server", 10_000, () => new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  }));
  return { child, port };
}

/** A request line sent as is: browsers and fetch() normalise `..` away. */
function rawGet(port, target) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let answer = "";
    socket.setTimeout(5000, () => socket.destroy(new Error("raw request timed out")));
    socket.on("data", (chunk) => (answer += chunk));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
    socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}

// -- the API, for what another customer does meanwhile ----------------------------

async function apiCall(base, method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body) headers["Content-Type"] = "application/json";
  const response = await fetch(base + path, { method, headers, body: body && JSON.stringify(body) });
  const text = await response.text();
  const json = /json/.test(response.headers.get("content-type") ?? "") && text ? JSON.parse(text) : undefined;
  return { status: response.status, headers: response.headers, text, json };
}

async function customerToken(base, email) {
  const registered = await apiCall(base, "POST", "/v1/customers", { body: { email, password } });
  assert.equal(registered.status, 201, registered.text);
  const session = await apiCall(base, "POST", "/v1/sessions", { body: { email, password } });
  assert.equal(session.status, 201, session.text);
  return session.json.token;
}

// -- page helpers ---------------------------------------------------------------

const errors = [];
let serverChild; // killed on every way out, the watchdog's too
let redisChild;

async function openPage(browser, url, viewport = { width: 1200, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("pageerror", (error) => errors.push(`${url}: ${error.message}`));
  page.on("console", (message) => {
    // The browser logs every 4xx answer; the 409 of a taken seat and the
    // 403 of a hold before the waiting room admitted are expected.
    const expected = /Failed to load resource: .* status of (409|403)/.test(message.text());
    if (message.type() === "error" && !expected) errors.push(`${url}: console: ${message.text()}`);
  });
  await page.goto(url);
  return page;
}

async function register(page, email) {
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#register");
  await page.waitForSelector("#signed-in:not([hidden])");
  assert.equal(await page.textContent("#who"), email);
}

const seat = (id, status) => `#seatmap [data-seat="${id}"]` + (status ? `[data-status="${status}"]` : "");

async function selectAndHold(page, ids) {
  for (const id of ids) await page.click(seat(id, "free"));
  for (const id of ids) await page.waitForSelector(seat(id, "selected"));
  await page.click("#hold-selected");
}

// -- the run ----------------------------------------------------------------------

async function main() {
  const server = await startServer();
  serverChild = server.child;
  const { base } = server;
  log(`server on ${base}`);
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  try {
    await run(server, browser);
  } finally {
    await browser.close();
    server.child.kill("SIGTERM");
  }
  // The waiting room needs Redis: a second node with its own redis-server.
  const redis = await startRedis();
  redisChild = redis.child;
  const queued = await startServer(["--redis-url", `redis://127.0.0.1:${redis.port}`]);
  serverChild = queued.child;
  const queueBrowser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  try {
    await runQueue(queued, queueBrowser);
  } finally {
    await queueBrowser.close();
    queued.child.kill("SIGTERM");
    redis.child.kill("SIGTERM");
  }
}

/**
 * A buyer meets an event with a waiting room: holding before joining says
 * so; joining shows a live position behind the customer who came first; once
 * admitted (two a second) the page holds with the admission token.
 */
async function runQueue(server, browser) {
  const { base } = server;
  await waitUntil("Redis in /health", 10_000, async () => {
    const health = await apiCall(base, "GET", "/health");
    return health.status === 200 && health.json.services?.redis === "ok";
  });
  const created = await apiCall(base, "POST", "/v1/events", {
    token: adminToken,
    body: {
      id: "queue-test",
      name: "Queue night",
      starts_at: "2026-12-31T20:00:00Z",
      sections: [{ id: "floor", name: "Floor", price_cents: 4000, rows: [{ label: "A", seats: 8 }] }],
      waiting_room: { enabled: true, admit_per_second: 2 },
    },
  });
  assert.equal(created.status, 201, created.text);
  const first = await customerToken(base, "first-in-line@example.com");
  const firstTicket = await apiCall(base, "POST", "/v1/events/queue-test/queue", { token: first });
  assert.equal(firstTicket.status, 201, firstTicket.text);
  assert.equal(firstTicket.json.position, 1);

  const page = await openPage(browser, `${base}/?event=queue-test&section=floor`);
  await register(page, "queued@example.com");
  await page.waitForSelector("#queue:not([hidden])");
  await page.waitForSelector("#queue-status:has-text('join it to get your turn')");
  await page.click(seat("A-1", "free"));
  await page.click("#hold-selected");
  await page.waitForSelector("#problem:has-text('This event has a waiting room')");
  await page.click("#queue-join");
  // Second in line, or admitted already if the loop was quick.
  await page.waitForSelector("#queue-status:has-text('You are number 2'), #queue-status:has-text('You are in')");
  await page.waitForSelector("#queue-status:has-text('You are in')", { timeout: 10_000 });
  await page.waitForSelector(seat("A-1", "selected"));
  await page.click("#hold-selected");
  await page.waitForSelector("#hold-panel:not([hidden])");
  await page.waitForSelector(seat("A-1", "mine"));
  log("the waiting room: a live position, then admitted, then held");
  assert.deepEqual(errors, [], "no script errors on any page");
}

async function run(server, browser) {
  const { base, port } = server;

  // The pages come from the server itself, beside an undisturbed API.
  const index = await apiCall(base, "GET", "/");
  assert.equal(index.status, 200);
  assert.match(index.headers.get("content-type"), /^text\/html/);
  assert.equal(index.headers.get("cache-control"), "no-cache");
  assert.doesNotMatch(index.text, /https?:\/\//, "the page names no other origin (no CDN)");
  const script = /src="(\/assets\/[^"]+\.js)"/.exec(index.text)[1];
  const asset = await apiCall(base, "GET", script);
  assert.equal(asset.status, 200);
  assert.match(asset.headers.get("content-type"), /^text\/javascript/);
  assert.match(asset.headers.get("cache-control"), /immutable/);
  const revalidated = await fetch(`${base}/`, { headers: { "If-None-Match": index.headers.get("etag") } });
  assert.equal(revalidated.status, 304);
  const posted = await apiCall(base, "POST", "/index.html", { body: {} });
  assert.equal(posted.status, 405);
  assert.equal(posted.headers.get("allow"), "GET");
  assert.equal((await apiCall(base, "GET", "/operator.html")).status, 200);
  assert.equal((await apiCall(base, "GET", "/no-such-page.html")).status, 404);
  const unknownApi = await apiCall(base, "GET", "/v1/no-such-route");
  assert.equal(unknownApi.status, 404);
  assert.equal(unknownApi.json.code, "not_found");
  assert.equal((await apiCall(base, "GET", "/health")).status, 200);
  for (const target of ["/../../../../etc/passwd", "/assets/../../CMakeLists.txt", "/%2e%2e/%2e%2e/etc/passwd"]) {
    const answer = await rawGet(port, target);
    assert.match(answer, /^HTTP\/1\.1 404/, `${target}: ${answer.slice(0, 80)}`);
    assert.doesNotMatch(answer, /root:/);
  }
  log("static serving checked over HTTP");

  // The operator creates the event with the form: two sections, 30 s holds.
  const operator = await openPage(browser, `${base}/operator.html`);
  await operator.fill("#admin-token", adminToken);
  await operator.click("#use-token");
  await operator.fill("#new-name", "Browser test night");
  await operator.fill("#new-id", "ui-test");
  await operator.fill("#new-starts", "2026-12-31T20:00");
  await operator.fill("#new-ttl", "30");
  await operator.fill("#section-0-id", "floor");
  await operator.fill("#section-0-name", "Floor");
  await operator.fill("#section-0-price", "50.00");
  await operator.fill("#section-0-rows", "4");
  await operator.fill("#section-0-seats", "12");
  await operator.click("#add-section");
  await operator.fill("#section-1-id", "balcony");
  await operator.fill("#section-1-name", "Balcony");
  await operator.fill("#section-1-price", "30.00");
  await operator.fill("#section-1-rows", "2");
  await operator.fill("#section-1-seats", "8");
  await operator.click("#create-event");
  await operator.waitForSelector("#notice:has-text('Created Browser test night (ui-test) with 64 seats')");
  await operator.waitForSelector('[data-event="ui-test"] tr[data-section="floor"]');
  const created = await apiCall(base, "GET", "/v1/events/ui-test");
  assert.equal(created.json.hold_ttl_seconds, 30);
  assert.deepEqual(
    created.json.sections.map((s) => [s.id, s.price_cents, s.seats_total]),
    [["floor", 5000, 48], ["balcony", 3000, 16]],
  );
  const floorSeats = await apiCall(base, "GET", "/v1/events/ui-test/sections/floor/seats");
  assert.deepEqual([floorSeats.json.seats[0].id, floorSeats.json.seats.at(-1).id], ["A-1", "D-12"]);
  log("event created with the operator's form");

  // The countdown: a hold of 30 s made first; the other steps run meanwhile.
  const waiter = await openPage(browser, `${base}/?event=ui-test&section=balcony`);
  await register(waiter, "waiter@example.com");
  await selectAndHold(waiter, ["A-1", "A-2"]);
  await waiter.waitForSelector("#hold-panel:not([hidden])");
  await waiter.waitForSelector(seat("A-1", "mine"));
  const firstCount = await waiter.textContent("#countdown");
  assert.match(firstCount, /^0:(30|2\d)$/, `countdown shows ${firstCount}`);
  const countdownStarted = Date.now();
  log(`countdown started at ${firstCount}`);

  // A buyer holds and books two seats; a second browser watches them turn.
  const watcher = await openPage(browser, `${base}/?event=ui-test&section=floor`);
  await watcher.waitForSelector(seat("A-1", "free"));
  const buyer = await openPage(browser, `${base}/?event=ui-test&section=floor`);
  await register(buyer, "buyer@example.com");
  await selectAndHold(buyer, ["A-1", "A-2"]);
  await buyer.waitForSelector(seat("A-1", "mine"));
  await buyer.waitForSelector(seat("A-2", "mine"));
  assert.equal(await buyer.getAttribute(seat("A-1"), "aria-label"), "Seat A-1, held by you");
  assert.match(await buyer.textContent("#hold-seats"), /A-1, A-2 · total 100\.00/);
  await watcher.waitForSelector(seat("A-1", "held"), { timeout: 2000 });
  await buyer.click("#book");
  await buyer.waitForSelector("#notice:has-text('Booked A-1, A-2')");
  const bookedAt = Date.now();
  await watcher.waitForSelector(seat("A-1", "booked"), { timeout: 2000 });
  await watcher.waitForSelector(seat("A-2", "booked"), { timeout: 2000 });
  log(`the second browser saw the booking after ${Date.now() - bookedAt} ms`);
  await buyer.waitForSelector("#booking-list li.confirmed:has-text('A-1, A-2')");
  await buyer.waitForSelector(seat("A-1", "booked"));

  // A seat someone else takes first. The rival's map is kept stale (its seat
  // requests wait at a gate) so that the click certainly meets a taken seat.
  const rival = await openPage(browser, `${base}/?event=ui-test&section=floor`);
  await register(rival, "rival@example.com");
  await rival.waitForSelector(seat("B-5", "free"));
  // By keyboard: into the map, down a row, right to seat 5, Space.
  await rival.focus('#seatmap button[tabindex="0"]');
  assert.equal(await rival.evaluate(() => document.activeElement.dataset.seat), "A-1");
  await rival.keyboard.press("ArrowDown");
  for (let i = 0; i < 4; i++) await rival.keyboard.press("ArrowRight");
  assert.equal(await rival.evaluate(() => document.activeElement.dataset.seat), "B-5");
  await rival.keyboard.press("Space");
  await rival.waitForSelector(seat("B-5", "selected"));
  let openGate;
  const gate = new Promise((resolve) => (openGate = resolve));
  await rival.route("**/sections/*/seats", async (route) => {
    await gate;
    await route.continue();
  });
  const other = await customerToken(base, "faster@example.com");
  const taken = await apiCall(base, "POST", "/v1/holds", {
    token: other,
    body: { event_id: "ui-test", section_id: "floor", seats: ["B-5"] },
  });
  assert.equal(taken.status, 201, taken.text);
  await rival.click("#hold-selected");
  await rival.waitForSelector("#problem:has-text('B-5 was taken by someone else')");
  await rival.waitForSelector(seat("B-5", "held"));
  assert.equal(await rival.isHidden("#hold-panel"), true, "nothing was held");
  openGate();
  await rival.unrouteAll({ behavior: "wait" });
  await selectAndHold(rival, ["B-6"]);
  await rival.waitForSelector("#hold-panel:not([hidden])");
  await rival.waitForSelector(seat("B-6", "mine"));
  log("the taken seat gave a clear message; the page went on to hold B-6");

  // The screenshots: the buyer's map with booked and held seats, the
  // dashboard with the booking's revenue, and the buyer's page on a phone.
  await buyer.waitForSelector(seat("B-5", "held"));
  await buyer.waitForSelector(seat("B-6", "held"));
  mkdirSync(screenshots, { recursive: true });
  // From the top: the message line sticks to the top of a scrolled page.
  await buyer.evaluate(() => window.scrollTo(0, 0));
  await buyer.screenshot({ path: join(screenshots, "buyer.png"), fullPage: true });
  await operator.waitForSelector('[data-event="ui-test"] .revenue:has-text("Revenue 100.00")');
  await operator.waitForFunction(() => {
    const cells = document.querySelectorAll('[data-event="ui-test"] tr[data-section="floor"] td');
    return cells[4]?.textContent === "2" && cells[3]?.textContent === "2";
  });
  await operator.waitForFunction(() => document.querySelector("#holds-rate").textContent !== "–");
  // A single node's /health has no cluster member, so the dashboard has no Cluster panel.
  assert.equal((await apiCall(base, "GET", "/health")).json.cluster, undefined);
  assert.equal(await operator.isHidden("#cluster"), true, "a single node shows no Cluster panel");
  await operator.evaluate(() => window.scrollTo(0, 0));
  await operator.screenshot({ path: join(screenshots, "operator.png"), fullPage: true });
  const phone = await openPage(browser, `${base}/?event=ui-test&section=floor`, { width: 390, height: 844 });
  await phone.waitForSelector(seat("A-1", "booked"));
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  await phone.screenshot({ path: join(screenshots, "buyer-phone.png"), fullPage: true });
  log("screenshots saved");

  // The countdown reaches zero; the seats turn free on the map.
  const left = 30_000 - (Date.now() - countdownStarted);
  await waiter.waitForSelector("#hold-state:has-text('Your hold expired')", { timeout: left + 5000 });
  assert.equal(await waiter.textContent("#countdown"), "0:00");
  await waiter.waitForSelector(seat("A-1", "free"), { timeout: 3000 });
  await waiter.waitForSelector(seat("A-2", "free"), { timeout: 3000 });
  const seats = await apiCall(base, "GET", "/v1/events/ui-test/sections/balcony/seats");
  assert.deepEqual(seats.json.seats.slice(0, 2), [
    { id: "A-1", status: "free" },
    { id: "A-2", status: "free" },
  ]);
  assert.equal(await waiter.isDisabled("#book"), true);
  log("the countdown reached zero and the seats turned free");

  // Cancelling the booking frees its seats for everyone.
  buyer.once("dialog", (dialog) => dialog.accept());
  await buyer.click("#booking-list li.confirmed button:has-text('Cancel')");
  await buyer.waitForSelector("#booking-list li.cancelled:has-text('A-1, A-2')");
  await watcher.waitForSelector(seat("A-1", "free"), { timeout: 2000 });
  log("the cancelled booking's seats turned free");

  assert.deepEqual(errors, [], "no script errors on any page");
}

const watchdog = setTimeout(() => {
  console.error(`the browser test passed its deadline of ${RUN_DEADLINE_MS / 1000} s`);
  serverChild?.kill("SIGKILL");
  redisChild?.kill("SIGKILL");
  process.exit(1);
}, RUN_DEADLINE_MS);
watchdog.unref();

main().then(
  () => {
    log("all browser checks passed");
    process.exit(0);
  },
  (error) => {
    console.error(error);
    if (errors.length) console.error("page errors:", errors);
    process.exit(1);
  },
);
