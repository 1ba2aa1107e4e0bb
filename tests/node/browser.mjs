// Drives Debian's Chromium, headless, through playwright-core (no browser download): opens
// PAGE_URL (tests/node/browser/index.html served by the test), waits until the page's MQTT.js
// client has subscribed and published, then until EXPECTED messages are listed in the page, and
// prints JSON lines on stdout:
//   {"event":"ready"}
//   {"event":"received","status":"subscribed","messages":[{"topic":"...","payload":"..."}]}
// Exits non-zero with {"event":"error",...} on any failure; every wait is bounded by --timeout,
// and the whole run by --timeout plus 15 s.
//
// Usage: node browser.mjs PAGE_URL EXPECTED [--timeout MS]
// The browser is $CHROMIUM, else /usr/bin/chromium.

import process from "node:process";
import { launchChromium } from "./chromium.mjs";

const [url, expectedText, flag, timeoutText] = process.argv.slice(2);
const expected = Number(expectedText);
const timeout = flag === "--timeout" ? Number(timeoutText) : 15000;

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

if (!url || !Number.isInteger(expected)) {
  emit({ event: "error", message: "usage: node browser.mjs PAGE_URL EXPECTED [--timeout MS]" });
  process.exit(2);
}

const watchdog = setTimeout(() => {
  emit({ event: "error", message: `still running after ${timeout + 15000} ms` });
  process.exit(3);
}, timeout + 15000);

const console_lines = [];
let browser;
let code = 0;
try {
  browser = await launchChromium(timeout);
  const page = await browser.newPage();
  page.on("console", (m) => console_lines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console_lines.push(`pageerror: ${e.message}`));
  await page.goto(url, { timeout });
  const status = () => page.locator("#status").textContent();
  await page.waitForFunction(
    () => {
      const s = document.getElementById("status").textContent;
      return s === "subscribed" || s.startsWith("error") || s === "closed";
    },
    null,
    { timeout },
  );
  const ready = await status();
  if (ready !== "subscribed") throw new Error(`page status: ${ready}`);
  emit({ event: "ready" });
  await page.waitForFunction(
    (n) => document.querySelectorAll("#received li").length >= n,
    expected,
    { timeout },
  );
  const messages = await page.$$eval("#received li", (items) =>
    items.map((li) => ({ topic: li.dataset.topic, payload: li.textContent })),
  );
  emit({ event: "received", status: await status(), messages });
} catch (e) {
  emit({ event: "error", message: String(e && e.message ? e.message : e), console: console_lines });
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(code);
