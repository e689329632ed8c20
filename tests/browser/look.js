// Open an exported notebook in headless Chromium and report what a person sees.
//
//   node look.js PAGE.html SCREENSHOT.png
//
// Prints one JSON object: tab labels, the diff rows (kind, computed background, text),
// the changed cells, the log's entries, page errors. Requests that leave file:// are
// refused (the page must not need a network). The browser is the system's Chromium
// ($CHROMIUM, default /usr/bin/chromium); Playwright never downloads one.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

async function main() {
  const [page_, shot] = process.argv.slice(2);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "dbvers-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const errors = [];
  const refused = [];
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("requestfailed", (r) => { if (!refused.includes(r.url())) errors.push("failed: " + r.url()); });
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith("file:") || url.startsWith("data:")) return route.continue();
      refused.push(url);
      return route.abort();
    });
    await page.goto("file://" + path.resolve(page_));
    await page.waitForSelector(".dbvers-diff-view .dbvers-row", { state: "visible", timeout: 60000 });
    await page.waitForSelector(".dbvers-log-view select option", { timeout: 60000 });
    await page.waitForSelector(".dbvers-conflicts-view tr.dbvers-conflict-ours", { state: "visible", timeout: 60000 });
    const facts = await page.evaluate(() => {
      const visible = (el) => {
        const r = el.getBoundingClientRect();
        const s = getComputedStyle(el);
        return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
      };
      const text = (el) => el.innerText.replace(/\s+/g, " ").trim();
      const views = [...document.querySelectorAll(".dbvers-diff-view")].filter(
        (v) => !v.parentElement.closest(".dbvers-diff-view"));
      return {
        views: views.map((v) => ({
          inLog: !!v.closest(".dbvers-log-view"),
          header: text(v.querySelector(".dbvers-title")),
          tabs: [...v.querySelectorAll(".lm-TabBar-tab")].filter(visible).map(text),
          clippedTabs: [...v.querySelectorAll(".lm-TabBar-tabLabel")].filter(visible)
            .filter((l) => l.scrollWidth > l.clientWidth + 1).map(text),
          rows: [...v.querySelectorAll(".dbvers-row")].filter(visible).map((r) => ({
            kind: [...r.classList].find((c) => ["dbvers-added", "dbvers-removed", "dbvers-modified"].includes(c)),
            background: getComputedStyle(r).backgroundColor,
            text: text(r),
          })),
          changed: [...v.querySelectorAll(".dbvers-changed")].filter(visible).map(text),
          buttons: [...v.querySelectorAll("button")].filter(visible).map(text),
        })),
        log: [...document.querySelectorAll(".dbvers-log-view select option")].map((o) => o.textContent),
        checkout: [...document.querySelectorAll(".dbvers-log-view button")].filter(visible).map(text),
        conflicts: (() => {
          const v = document.querySelector(".dbvers-conflicts-view");
          if (!v) return null;
          return {
            header: text(v.querySelector(".widget-html") || v),
            tabs: [...v.querySelectorAll(".lm-TabBar-tab")].filter(visible).map(text),
            rows: [...v.querySelectorAll("tr[class^='dbvers-conflict-']")].filter(visible).map((r) => ({
              side: r.className.replace("dbvers-conflict-", ""),
              text: text(r),
              coloured: [...r.querySelectorAll("td")].filter((td) => td.style.background).map(text),
            })),
            buttons: [...v.querySelectorAll("button")].filter(visible).map(text),
          };
        })(),
      };
    });
    await page.screenshot({ path: shot, fullPage: true });
    const diffView = page.locator(".dbvers-diff-view").first();
    await diffView.screenshot({ path: shot.replace(/\.png$/, "-diff.png") });
    facts.errors = errors;
    facts.refused = refused;
    process.stdout.write(JSON.stringify(facts) + "\n");
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
