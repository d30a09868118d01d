// The browser check: opens every page of the built book (book/) in headless Chromium at a
// 1280 x 800 window, as a reader would, and fails when a page
//   - logs a console error or throws (a broken script, a 404 for a script, font or image),
//   - uses KaTeX math but a KaTeX font did not load (the math would render in a fallback font),
//   - has an image that did not load,
//   - has a listing wider than its code pane (the reader would have to scroll sideways).
// It also checks that search finds a word, and saves the README screenshot (chapter 1) from
// this same run, so the screenshot cannot go stale.
//
// Usage: node check.mjs BOOK_DIR SCREENSHOT_PNG  (scripts/test.sh runs it; CHROMIUM overrides
// the browser's path, /usr/bin/chromium by default).
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile, readdir, writeFile, rename } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";

const [bookDir, screenshotPath] = process.argv.slice(2);
if (!bookDir || !screenshotPath) {
  console.error("usage: node check.mjs BOOK_DIR SCREENSHOT_PNG");
  process.exit(2);
}
const root = resolve(bookDir);
const WIDTH = 1280;
const HEIGHT = 800;
// A page scrolls sideways when scrollWidth exceeds clientWidth; 1 px absorbs sub-pixel rounding.
const SLACK_PX = 1;

const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".woff": "font/woff",
  ".ttf": "font/ttf",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

// A static file server for book/ on a free loopback port (file:// URLs would hide the
// missing-file errors a web server reports, and mdBook's search expects http).
const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  // A browser asks for /favicon.ico on a page that names no icon (mdBook's toc.html, the
  // no-JavaScript table of contents); it is not a file the book links to.
  if (path === "/favicon.ico") {
    res.writeHead(204).end();
    return;
  }
  const file = normalize(join(root, path.endsWith("/") ? path + "index.html" : path));
  if (!file.startsWith(root)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end("not found");
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // Without the background-networking flags Chromium keeps trying to reach Google's hosts,
  // which a closed network refuses.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const problems = [];
const pages = (await readdir(root)).filter((f) => f.endsWith(".html")).sort();
try {
  const context = await browser.newContext({ viewport: { width: WIDTH, height: HEIGHT } });
  for (const name of pages) {
    const page = await context.newPage();
    const errors = [];
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
    });
    page.on("pageerror", (err) => errors.push(`script error: ${err.message}`));
    page.on("response", (r) => {
      if (r.status() >= 400 && !(name === "404.html" && r.url().endsWith("404.html"))) {
        errors.push(`HTTP ${r.status()} for ${r.url().replace(base, "")}`);
      }
    });
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url().replace(base, "")}`));
    await page.goto(base + name, { waitUntil: "load" });
    const report = await page.evaluate(async (slack) => {
      await document.fonts.ready;
      const out = { fonts: [], images: [], wide: [], katex: 0, katexLoaded: 0 };
      out.katex = document.querySelectorAll(".katex").length;
      for (const f of document.fonts) {
        if (!f.family.replace(/"/g, "").startsWith("KaTeX")) continue;
        if (f.status === "error") out.fonts.push(`${f.family} ${f.weight} ${f.style}`);
        if (f.status === "loaded") out.katexLoaded += 1;
      }
      for (const img of document.images) {
        if (!img.complete || img.naturalWidth === 0) out.images.push(img.getAttribute("src"));
      }
      // Listings: mdBook puts `overflow-x: auto` on pre > code, so a too-wide listing shows
      // as a code element whose content is wider than its box.
      for (const code of document.querySelectorAll("main pre > code")) {
        if (code.scrollWidth > code.clientWidth + slack) {
          const first = code.innerText.split("\n").find((l) => l.trim()) ?? "";
          out.wide.push(
            `listing ${code.scrollWidth}px in a ${code.clientWidth}px pane: "${first.trim().slice(0, 60)}"`,
          );
        }
      }
      return out;
    }, SLACK_PX);
    for (const e of errors) problems.push(`${name}: ${e}`);
    for (const f of report.fonts) problems.push(`${name}: KaTeX font did not load: ${f}`);
    if (report.katex > 0 && report.katexLoaded === 0) {
      problems.push(`${name}: ${report.katex} formulas but no KaTeX font loaded`);
    }
    for (const i of report.images) problems.push(`${name}: image did not load: ${i}`);
    for (const w of report.wide) problems.push(`${name}: ${w}`);
    console.log(
      `browser-check: ${name}: ${report.katex} formulas, ${report.katexLoaded} KaTeX fonts, ` +
        `${errors.length + report.fonts.length + report.images.length + report.wide.length} problems`,
    );
    await page.close();
  }

  // Search: type a word every chapter uses and expect results that link into the book.
  const page = await context.newPage();
  await page.goto(base + "index.html", { waitUntil: "load" });
  await page.click("#mdbook-search-toggle");
  // mdBook loads its search index only when the search bar opens, and ignores what is
  // typed before the index arrives: type again (three tries) until results show.
  let hits = 0;
  for (let attempt = 0; attempt < 3 && hits === 0; attempt++) {
    await page.fill("#mdbook-searchbar", "");
    await page.type("#mdbook-searchbar", "softmax", { delay: 20 });
    try {
      await page.waitForSelector("#mdbook-searchresults li a", { timeout: 5000 });
      hits = await page.$$eval("#mdbook-searchresults li a", (as) => as.length);
    } catch {
      // not yet: try again
    }
  }
  if (hits > 0) {
    console.log(`browser-check: search for "softmax": ${hits} results`);
  } else {
    problems.push(`search: typing "softmax" gave no results`);
  }
  await page.close();

  // The README screenshot, from this run: chapter 1 at the first formula.
  const shot = await context.newPage();
  await shot.goto(base + "ch01-00-attention-intuition.html#step-3-the-context-vector-is-the-weighted-sum", {
    waitUntil: "load",
  });
  await shot.evaluate(() => document.fonts.ready);
  const png = await shot.screenshot({ type: "png" });
  // Written next to the target and renamed, so an interrupted run never leaves half a PNG.
  await writeFile(screenshotPath + ".tmp", png);
  await rename(screenshotPath + ".tmp", screenshotPath);
  console.log(`browser-check: screenshot written to ${screenshotPath}`);
  await shot.close();
} finally {
  await browser.close();
  server.close();
}

if (problems.length > 0) {
  console.error(`browser-check: ${problems.length} problems in ${pages.length} pages:`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log(`browser-check: ${pages.length} pages are fine`);
