// Drives the shop in Debian's headless Chromium (playwright-core) against a
// running `wrangler dev`. One phase per run, chosen by the Rust test that owns
// the processes (tests/e2e/shop_browser.rs):
//   origin   — browse, view, add to cart: rows fill from the origin and change
//   edge     — the origin is stopped: rows still fill, from the edge model
//   blocked  — the API is unreachable: rows show the bundled popular items
// Usage: node tests/browser/shop.mjs <base-url> <phase> <artifact-dir>
// Exits non-zero with the failed check's message.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, phase, out] = process.argv.slice(2);
if (!base || !phase || !out) {
  console.error("usage: shop.mjs <base-url> <origin|edge|blocked> <artifact-dir>");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

/** Waits for a row to leave its loading state and returns its source badge text and item ids. */
async function row(page, testId) {
  const badge = page.getByTestId(`${testId}-source`);
  await badge.filter({ hasNotText: "loading" }).waitFor({ timeout: 15_000 });
  const ids = await page.getByTestId(testId).locator("a.card").evaluateAll((as) => as.map((a) => a.dataset.itemId));
  return { badge: (await badge.textContent()) ?? "", source: await badge.getAttribute("data-source"), ids };
}

async function shot(page, name) {
  await page.screenshot({ path: join(out, `${phase}-${name}.png`), fullPage: true });
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  if (phase === "origin") {
    await page.goto(`${base}/#/`);
    await page.getByTestId("catalog").locator("a.card").first().waitFor();
    const first = await row(page, "for-you");
    assert.equal(first.source, "popular", "an empty history gets the popular list");
    await shot(page, "catalog");

    // View the most popular item: its rows come from the origin and leave it out.
    const firstCard = page.getByTestId("catalog").locator("a.card").first();
    const viewed = await firstCard.getAttribute("data-item-id");
    await firstCard.click();
    await page.getByTestId("product-title").waitFor();
    const also = await row(page, "also-bought");
    assert.equal(also.source, "origin", `"Customers also bought" answered by the origin (badge: ${also.badge})`);
    assert.match(also.badge, /ms/, "the badge shows how long it took");
    assert.equal(also.ids.length, 10);
    assert.ok(!also.ids.includes(viewed), "the viewed item is not recommended back");
    await page.getByTestId("add-to-cart").click();
    assert.equal(await page.locator("#cart-count").textContent(), "1");
    await shot(page, "product");

    // Click a recommendation: history grows, the personal row changes and excludes both.
    const next = page.getByTestId("also-bought").locator("a.card").first();
    const second = await next.getAttribute("data-item-id");
    await next.click();
    // Wait for the new page itself, not just the URL: the old page's rows
    // stay on screen until the hashchange handler has rendered the new one.
    await page.locator(`#main[data-route="/item/${second}"]`).waitFor();
    const forYou = await row(page, "for-you");
    assert.equal(forYou.source, "origin");
    for (const id of [viewed, second]) assert.ok(!forYou.ids.includes(id), `viewed item ${id} excluded`);
    assert.notDeepEqual(forYou.ids, first.ids, "the row reacts to what the shopper did");
    const history = await page.evaluate(() => JSON.parse(localStorage.getItem("edgerec.history")));
    assert.deepEqual(history, [viewed, second]);
    await shot(page, "second-product");

    // Crafted links: an over-long id and a malformed escape show a broken-link
    // page and leave the stored history alone.
    for (const link of [`#/item/${"x".repeat(300)}`, "#/item/%E0%A4%A", "#/item/50,172", "#/item/not-in-the-catalog"]) {
      await page.goto(`${base}/${link}`);
      if (link.endsWith("not-in-the-catalog")) {
        await page.locator('#main[data-route="/item/not-in-the-catalog"]').waitFor();
      } else {
        await page.getByTestId("bad-link").waitFor();
      }
      const after = await page.evaluate(() => JSON.parse(localStorage.getItem("edgerec.history")));
      assert.deepEqual(after, [viewed, second], `${link.slice(0, 40)} left the history alone`);
    }
    // A history poisoned by an older page is cleaned, not sent.
    await page.evaluate(() => localStorage.setItem("edgerec.history", JSON.stringify(["50", "y".repeat(300), "a,b"])));
    await page.goto(`${base}/#/cart`);
    await page.locator('#main[data-route="/cart"]').waitFor();
    const cleaned = await row(page, "for-you");
    assert.ok(["origin", "cache"].includes(cleaned.source), `a poisoned history still gets full-model recommendations (badge: ${cleaned.badge})`);
    assert.equal(cleaned.ids.length, 10);

    // Check out: the views, the cart and the purchases go to /v1/events (edge → queue → origin → store).
    await page.goto(`${base}/#/cart`);
    await page.locator('#main[data-route="/cart"]').waitFor();
    const queued = page.waitForResponse((r) => r.url().endsWith("/v1/events") && r.request().postData()?.includes('"purchase"'));
    await page.getByTestId("checkout").click();
    assert.equal((await queued).status(), 202, "the edge queued the purchase");
    assert.equal(await page.locator("#cart-count").textContent(), "0");
    console.log(`shop session: ${await page.evaluate(() => localStorage.getItem("edgerec.session"))}`);

    // Keyboard: Tab reaches a product card and Enter opens it.
    await page.goto(`${base}/#/`);
    await page.getByTestId("catalog").locator("a.card").first().waitFor();
    await page.getByTestId("catalog").locator("a.card").first().focus();
    await page.keyboard.press("Enter");
    await page.getByTestId("product-title").waitFor();

    // Phone width: no horizontal overflow of the page.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/#/`);
    await row(page, "for-you");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page overflows the phone viewport by ${overflow}px`);
    await shot(page, "phone");
  } else if (phase === "edge") {
    // An item not asked for before, so no cached answer can hide the failover.
    await page.goto(`${base}/#/item/100`);
    await page.getByTestId("product-title").waitFor();
    const also = await row(page, "also-bought");
    assert.equal(also.source, "edge", `origin stopped: the edge model answers (badge: ${also.badge})`);
    assert.equal(also.ids.length, 10);
    assert.ok(!also.ids.includes("100"));
    await shot(page, "product");
  } else if (phase === "blocked") {
    await page.route("**/v1/recommendations**", (route) => route.abort("connectionrefused"));
    await page.goto(`${base}/#/item/50`);
    await page.getByTestId("product-title").waitFor();
    const also = await row(page, "also-bought");
    assert.equal(also.source, "bundled");
    assert.equal(also.ids.length, 10, "never an empty row");
    assert.ok(!also.ids.includes("50"));
    await page.getByTestId("also-bought-fallback").waitFor();
    await shot(page, "product");
  } else {
    throw new Error(`unknown phase ${phase}`);
  }
  assert.deepEqual(errors, [], "no script errors on the page");
  console.log(`shop ${phase}: ok`);
} catch (e) {
  console.error(`shop ${phase}: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
