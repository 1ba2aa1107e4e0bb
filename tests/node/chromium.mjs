// Headless Chromium for the browser tests (browser.mjs, dashboard.mjs): Debian's executable
// (or $CHROMIUM) driven by playwright-core, with no network but loopback.
import process from "node:process";
import { chromium } from "playwright-core";

export function launchChromium(timeout) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout,
    // Keep Chromium from calling home.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}
