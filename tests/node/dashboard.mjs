// The web dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core
// (no browser download), against a running `tern serve` whose admin API is ADMIN_URL.
//
// It opens the dashboard, signs in with the API key, connects an MQTT.js client over TCP that
// publishes steadily, waits until the page's message-rate chart reports a rising rate (the
// `data-rate-in` attribute of the chart, not pixels), finds the client in the clients table,
// kicks it from the page (the client gets DISCONNECT 0x98), checks that a client id made of
// HTML shows as text, checks the layout of a narrow window, and saves screenshots. Prints JSON
// lines on stdout:
//   {"event":"page","csp":"...","redirected":true}
//   {"event":"signed-in"}
//   {"event":"rate","before":0,"in":12.5,"points":3,"connections":"1"}
//   {"event":"listed","state":"connected","rows":2}
//   {"event":"pages","route":[...],"subscription":[...],"payload":"...","listener":[...],"reloaded":"..."}
//   {"event":"kicked","reasonCode":152,"rowAfter":"gone|disconnected"}
//   {"event":"escaped","text":"<b id=\"xss\">x</b>","injected":false}
//   {"event":"narrow","scrollWidth":420,"width":420}
//   {"event":"done","screenshots":[...],"requests":[...]}
// Exits non-zero with {"event":"error",...} on any failure; every wait is bounded by --timeout,
// and the whole run by --timeout plus 30 s.
//
// Usage: node dashboard.mjs ADMIN_URL MQTT_HOST:PORT KEY SECRET ARTIFACT_DIR [--timeout MS]
// The browser is $CHROMIUM, else /usr/bin/chromium.

import { mkdirSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import mqtt from "mqtt";
import { launchChromium } from "./chromium.mjs";

const [adminUrl, mqttAddr, key, secret, artifactDir, flag, timeoutText] = process.argv.slice(2);
const timeout = flag === "--timeout" ? Number(timeoutText) : 20000;

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

if (!adminUrl || !mqttAddr || !key || !secret || !artifactDir) {
  emit({
    event: "error",
    message: "usage: node dashboard.mjs ADMIN_URL MQTT_HOST:PORT KEY SECRET ARTIFACT_DIR [--timeout MS]",
  });
  process.exit(2);
}

const watchdog = setTimeout(() => {
  emit({ event: "error", message: `still running after ${timeout + 30000} ms` });
  process.exit(3);
}, timeout + 30000);

/** Resolves with the first of `events` that `emitter` emits, or rejects after the timeout. */
function once(emitter, events, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: nothing within ${timeout} ms`)), timeout);
    for (const name of events) {
      emitter.once(name, (...args) => {
        clearTimeout(timer);
        resolve({ name, args });
      });
    }
  });
}

const PUBLISHER = "dashboard-publisher";
const HTML_ID = '<b id="xss">x</b>';
const consoleLines = [];
const requests = new Set();
const screenshots = [];
let browser;
let publisher;
let htmlClient;
let ticker;
let code = 0;
try {
  mkdirSync(artifactDir, { recursive: true });
  browser = await launchChromium(timeout);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  page.on("request", (r) => requests.add(new URL(r.url()).origin));
  // The kick button asks for confirmation.
  page.on("dialog", (d) => d.accept());

  // `/` redirects to the dashboard, whose files carry the Content-Security-Policy.
  const response = await page.goto(`${adminUrl}/`);
  emit({
    event: "page",
    status: response.status(),
    csp: response.headers()["content-security-policy"] || null,
    redirected: page.url() === `${adminUrl}/dashboard/`,
  });

  // A wrong secret first: the page says so and stays on the login form.
  await page.getByLabel("API key").fill(key);
  await page.getByLabel("Secret").fill(`${secret}-wrong`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#login-error", { hasText: "wrong secret" }).waitFor();
  await page.getByLabel("Secret").fill(secret);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#app-view").waitFor({ state: "visible" });
  await page.locator('#live[data-state="live"]').waitFor();
  emit({ event: "signed-in" });

  // The rate before any traffic: the page has a rate once it has two stats events.
  const chart = page.locator("#chart-rates");
  await page.waitForFunction(() => document.getElementById("chart-rates").dataset.rateIn, null, {
    timeout,
  });
  const rateBefore = Number(await chart.getAttribute("data-rate-in"));

  // A publisher over TCP, steadily: 25 messages a second to a topic it also subscribes to, so
  // that messages go out too.
  const [host, port] = [mqttAddr.slice(0, mqttAddr.lastIndexOf(":")), mqttAddr.slice(mqttAddr.lastIndexOf(":") + 1)];
  publisher = mqtt.connect({
    host,
    port: Number(port),
    protocol: "mqtt",
    protocolVersion: 5,
    clientId: PUBLISHER,
    reconnectPeriod: 0,
    connectTimeout: timeout,
  });
  await once(publisher, ["connect", "error"], "MQTT.js connect").then(({ name, args }) => {
    if (name === "error") throw args[0];
  });
  await publisher.subscribeAsync("dashboard/load", { qos: 0 });
  const disconnected = once(publisher, ["disconnect"], "DISCONNECT from the broker");
  let sent = 0;
  ticker = setInterval(() => {
    if (publisher.connected) {
      publisher.publish("dashboard/load", `message ${sent++}`, { qos: 0 });
    }
  }, 40);

  // The rate chart rises: the page derives messages in per second from the stats events.
  // Three points on the chart, for the screenshot.
  await page.waitForFunction(
    () => {
      const canvas = document.getElementById("chart-rates");
      return Number(canvas.dataset.rateIn || 0) >= 10 && Number(canvas.dataset.points) >= 3;
    },
    null,
    { timeout },
  );
  const rateIn = Number(await chart.getAttribute("data-rate-in"));
  const points = Number(await chart.getAttribute("data-points"));
  const connections = await page.locator("#n-connections").textContent();
  emit({ event: "rate", before: rateBefore, in: rateIn, points, connections });
  const overviewShot = path.join(artifactDir, "dashboard-overview.png");
  await page.screenshot({ path: overviewShot, fullPage: true });
  screenshots.push(overviewShot);

  // A client whose id is HTML, to see how the table shows it.
  htmlClient = mqtt.connect({
    host,
    port: Number(port),
    protocol: "mqtt",
    protocolVersion: 5,
    clientId: HTML_ID,
    reconnectPeriod: 0,
    connectTimeout: timeout,
  });
  await once(htmlClient, ["connect", "error"], "MQTT.js connect (HTML id)").then(({ name, args }) => {
    if (name === "error") throw args[0];
  });

  // The clients table lists the publisher as connected.
  await page.getByRole("link", { name: "Clients" }).click();
  const table = page.locator("#clients-table");
  const publisherRow = table.locator("tbody tr", { hasText: PUBLISHER });
  await publisherRow.waitFor();
  const state = await publisherRow.locator(".state").textContent();
  const rows = await table.locator("tbody tr").count();
  emit({ event: "listed", state, rows });

  const htmlRow = table.locator("tbody tr", { hasText: "xss" });
  await htmlRow.waitFor();
  emit({
    event: "escaped",
    text: await htmlRow.locator("td").first().textContent(),
    injected: await page.evaluate(() => document.getElementById("xss") !== null),
  });
  const clientsShot = path.join(artifactDir, "dashboard-clients.png");
  await page.screenshot({ path: clientsShot, fullPage: true });
  screenshots.push(clientsShot);

  // The other pages: routes, subscriptions, a retained message (viewed, then deleted),
  // listeners and a configuration reload.
  await publisher.publishAsync("dashboard/kept", "kept <i>text</i>", { qos: 1, retain: true });
  await page.getByRole("link", { name: "Topics" }).click();
  const route = page.locator("#topics-table tbody tr", { hasText: "dashboard/load" });
  await route.waitFor();
  const routeCells = await route.locator("td").allTextContents();
  await page.getByRole("link", { name: "Subscriptions" }).click();
  const sub = page.locator("#subscriptions-table tbody tr", { hasText: "dashboard/load" });
  await sub.waitFor();
  const subCells = await sub.locator("td").allTextContents();
  await page.getByRole("link", { name: "Retained" }).click();
  const kept = page.locator("#retained-table tbody tr", { hasText: "dashboard/kept" });
  await kept.waitFor();
  await kept.getByRole("button", { name: "View dashboard/kept" }).click();
  await page.locator("#retained-message").waitFor({ state: "visible" });
  const payload = await page.locator("#retained-payload").textContent();
  await kept.getByRole("button", { name: "Delete dashboard/kept" }).click();
  await page.locator("#retained-table td.empty").waitFor();
  await page.getByRole("link", { name: "Listeners & config" }).click();
  const listener = page.locator("#listeners-table tbody tr", { hasText: mqttAddr });
  await listener.waitFor();
  const listenerCells = await listener.locator("td").allTextContents();
  await page.getByRole("button", { name: "Reload configuration" }).click();
  const reloaded = await page.locator("#reload-result p").first().textContent();
  emit({
    event: "pages",
    route: routeCells.slice(0, 2),
    subscription: subCells.slice(0, 3),
    payload,
    listener: listenerCells.slice(0, 3),
    reloaded,
  });
  await page.getByRole("link", { name: "Clients" }).click();
  await publisherRow.waitFor();

  // Kick it from the page: the client sees DISCONNECT 0x98, the row goes.
  await page.locator(`button[data-kick="${PUBLISHER}"]`).click();
  const { args } = await disconnected;
  const reasonCode = args[0] && args[0].reasonCode;
  await page.waitForFunction(
    (id) =>
      ![...document.querySelectorAll("#clients-table tbody tr")].some(
        (tr) =>
          tr.cells[0] &&
          tr.cells[0].textContent === id &&
          tr.querySelector(".state").textContent === "connected",
      ),
    PUBLISHER,
    { timeout },
  );
  const rowAfter = (await publisherRow.count()) === 0 ? "gone" : await publisherRow.locator(".state").textContent();
  emit({ event: "kicked", reasonCode, rowAfter, notice: await page.locator("#notice").textContent() });

  // A narrow window: nothing wider than the window but the tables' own scrolling boxes.
  await page.setViewportSize({ width: 420, height: 800 });
  await page.getByRole("link", { name: "Overview" }).click();
  await page.locator("#view-overview").waitFor({ state: "visible" });
  const narrow = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  emit({ event: "narrow", ...narrow });
  const narrowShot = path.join(artifactDir, "dashboard-narrow.png");
  await page.screenshot({ path: narrowShot, fullPage: true });
  screenshots.push(narrowShot);

  // Signing out forgets the token.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#login-view").waitFor({ state: "visible" });
  const tokenLeft = await page.evaluate(() => sessionStorage.getItem("tern.token"));
  emit({ event: "done", screenshots, requests: [...requests], tokenLeft, console: consoleLines });
} catch (e) {
  emit({ event: "error", message: String(e && e.message ? e.message : e), console: consoleLines });
  code = 1;
} finally {
  clearInterval(ticker);
  if (publisher) publisher.end(true);
  if (htmlClient) htmlClient.end(true);
  if (browser) await browser.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(code);
