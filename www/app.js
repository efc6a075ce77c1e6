// edgerec shop: a catalog, product pages and two recommendation rows fetched
// from the edge's /v1/recommendations. The shopper's history lives in
// localStorage; when the API fails the rows fall back to the popular items
// bundled with the page (generated/catalog.json, written by the worker build).

const API = "/v1/recommendations";
const API_TIMEOUT_MS = 2500;
const ROW_K = 10;
const PAGE = 48;
const HISTORY_KEY = "edgerec.history";
const CART_KEY = "edgerec.cart";
const HISTORY_MAX = 50;
const MAX_ID_BYTES = 256; // the API's limit (shared::wire::MAX_ID_BYTES)
const EVENTS_API = "/v1/events";
const SESSION_KEY = "edgerec.session";
const EVENTS_FLUSH_MS = 2000;
const EVENTS_MAX_BATCH = 50; // the API takes 500; a beacon carries at most 64 KiB

const main = document.getElementById("main");
let catalog = { items: [], byId: new Map(), dataset: "", version: "" };

// ---- shopper state (localStorage) ----------------------------------------

/** Whether the API accepts `id`: 1..=256 UTF-8 bytes, no comma (the GET form's separator). */
function isValidId(id) {
  return typeof id === "string" && id.length > 0 && !id.includes(",") && new TextEncoder().encode(id).length <= MAX_ID_BYTES;
}
/** A stored id list; anything the API would refuse is dropped, so a bad entry cannot break every row. */
function load(key) {
  try { const v = JSON.parse(localStorage.getItem(key) || "[]"); return Array.isArray(v) ? v.map(String).filter(isValidId) : []; }
  catch { return []; }
}
function save(key, ids) { localStorage.setItem(key, JSON.stringify(ids)); }
/** Records an interaction with a catalog item (a crafted link cannot plant others): the id
 * moves to the end (most recent), oldest dropped past HISTORY_MAX. */
function remember(id) {
  if (!catalog.byId.has(id)) return;
  const h = load(HISTORY_KEY).filter((x) => x !== id);
  h.push(id);
  save(HISTORY_KEY, h.slice(-HISTORY_MAX));
}
function addToCart(id) {
  const cart = load(CART_KEY);
  if (!cart.includes(id)) cart.push(id);
  save(CART_KEY, cart);
  remember(id);
  track("cart", id);
  updateCartCount();
}

// ---- events (POST /v1/events: edge → queue → origin → store) -----------------

/** This browser's session id (a random UUID kept in localStorage). */
function sessionId() {
  let s = localStorage.getItem(SESSION_KEY);
  if (!s) { s = crypto.randomUUID(); localStorage.setItem(SESSION_KEY, s); }
  return s;
}
let pending = [];
let flushTimer = null;
/** Queues one event; each gets a client-made event_id, so a resent batch is stored once. */
function track(type, id) {
  if (!isValidId(id)) return;
  pending.push({ event_id: crypto.randomUUID(), session_id: sessionId(), item_id: id, type, time: Date.now() });
  if (pending.length >= EVENTS_MAX_BATCH) flush();
  else if (!flushTimer) flushTimer = setTimeout(flush, EVENTS_FLUSH_MS);
}
/** Sends what is queued: a beacon when the page hides (it outlives the page), else fetch. */
function flush(beacon = false) {
  clearTimeout(flushTimer);
  flushTimer = null;
  if (!pending.length) return;
  const batch = pending.splice(0, EVENTS_MAX_BATCH);
  const body = JSON.stringify({ events: batch });
  if (beacon && navigator.sendBeacon(EVENTS_API, new Blob([body], { type: "application/json" }))) return;
  fetch(EVENTS_API, { method: "POST", headers: { "content-type": "application/json" }, body, keepalive: true })
    .then((r) => { if (r.status >= 500) pending.unshift(...batch); }) // the edge could not queue them: try again later
    .catch(() => { pending.unshift(...batch); });
  if (pending.length) flushTimer = setTimeout(flush, EVENTS_FLUSH_MS);
}
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") flush(true); });
function updateCartCount() { document.getElementById("cart-count").textContent = String(load(CART_KEY).length); }

// ---- catalog ---------------------------------------------------------------

function displayName(id, title) {
  if (title) return title;
  const item = catalog.byId.get(id);
  return item && item.title ? item.title : `Item ${id}`;
}
/** A stable colour per item id, standing in for a product photo. */
function hue(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}
function initials(name) {
  const small = new Set(["a", "an", "and", "of", "the", "in", "on", "to"]);
  const words = name.replace(/\(.*?\)/g, "").split(/[\s,:]+/).filter((w) => w && !small.has(w.toLowerCase()));
  return words.slice(0, 2).map((w) => w[0]).join("").toUpperCase() || "#";
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function card(id, title, meta) {
  const name = displayName(id, title);
  const swatch = el("div", { class: "swatch", "aria-hidden": "true", text: initials(name) });
  swatch.style.background = `hsl(${hue(id)} 45% 45%)`;
  const a = el("a", { class: "card", href: `#/item/${encodeURIComponent(id)}`, "data-item-id": id }, swatch, el("span", { class: "title", text: name }));
  if (meta) a.append(el("span", { class: "meta", text: meta }));
  return el("li", {}, a);
}

function skeletons(n) {
  return Array.from({ length: n }, () => el("li", { "aria-hidden": "true" }, el("div", { class: "card skeleton" }, el("div", { class: "swatch" }), el("span", { class: "title", text: "loading" }))));
}

// ---- recommendations ------------------------------------------------------

/** `total;dur=12` of a Server-Timing header, in ms, or null. */
function serverTotal(header) {
  const m = /(?:^|,\s*)total;dur=([\d.]+)/.exec(header || "");
  return m ? Number(m[1]) : null;
}

/** Fetches k recommendations for `history`; throws on HTTP errors, bad bodies and timeouts. */
async function fetchRecs(history, k) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), API_TIMEOUT_MS);
  const started = performance.now();
  try {
    const qs = new URLSearchParams({ history: history.join(","), k: String(k) });
    const r = await fetch(`${API}?${qs}`, { signal: ctrl.signal, headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const body = await r.json();
    if (!Array.isArray(body.items)) throw new Error("malformed answer");
    return { items: body.items, source: body.source || r.headers.get("x-rec-source") || "unknown", serverMs: serverTotal(r.headers.get("server-timing")), clientMs: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
  }
}

/** The bundled popular list, minus `exclude`. */
function bundledPopular(k, exclude) {
  const skip = new Set(exclude);
  return catalog.items.filter((it) => !skip.has(it.id)).slice(0, k).map((it) => ({ item_id: it.id, title: it.title }));
}

/** A titled row that fills itself from the edge, or from the bundled popular list on failure. */
function recRow(title, history, testId) {
  const list = el("ul", { class: "strip", "aria-busy": "true" }, ...skeletons(6));
  const badge = el("span", { class: "badge", "data-testid": `${testId}-source`, text: "loading…" });
  const section = el("section", { class: "row", "data-testid": testId, "aria-label": title }, el("div", { class: "row-head" }, el("h2", { text: title }), badge), list);
  fetchRecs(history, ROW_K)
    .then(({ items, source, serverMs, clientMs }) => {
      list.replaceChildren(...items.map((it) => card(it.item_id, it.title)));
      badge.dataset.source = source;
      badge.textContent = `source: ${source} · ${serverMs !== null ? `${serverMs} ms at the edge, ` : ""}${clientMs} ms here`;
      badge.title = "Where this row came from (x-rec-source) and how long it took (Server-Timing)";
    })
    .catch((err) => {
      list.replaceChildren(...bundledPopular(ROW_K, history).map((it) => card(it.item_id, it.title)));
      badge.dataset.source = "bundled";
      badge.textContent = "source: bundled popular items";
      section.insertBefore(el("p", { class: "note", role: "status", "data-testid": `${testId}-fallback`, text: `Recommendations are unavailable right now (${err.name === "AbortError" ? "timed out" : err.message}); showing popular items.` }), list);
    })
    .finally(() => list.setAttribute("aria-busy", "false"));
  return section;
}

// ---- views -----------------------------------------------------------------

function catalogView(query) {
  const q = (query || "").trim().toLowerCase();
  const matches = q ? catalog.items.filter((it) => displayName(it.id, it.title).toLowerCase().includes(q)) : catalog.items;
  const grid = el("ul", { class: "grid", "data-testid": "catalog" });
  let shown = 0;
  const more = el("button", { type: "button", class: "btn more", text: "Show more" });
  const page = () => {
    grid.append(...matches.slice(shown, shown + PAGE).map((it) => card(it.id, it.title, `${it.popularity} interactions`)));
    shown += PAGE;
    more.hidden = shown >= matches.length;
  };
  more.addEventListener("click", page);
  page();
  const history = load(HISTORY_KEY);
  return [
    recRow("Recommended for you", history, "for-you"),
    el("h1", { text: q ? `Results for “${query}” (${matches.length})` : "Catalog" }),
    matches.length ? grid : el("p", { text: "Nothing matches your search." }),
    more,
  ];
}

function productView(id) {
  remember(id);
  if (catalog.byId.has(id)) track("view", id);
  const name = displayName(id);
  const known = catalog.byId.has(id);
  const swatch = el("div", { class: "swatch", "aria-hidden": "true", text: initials(name) });
  swatch.style.background = `hsl(${hue(id)} 45% 45%)`;
  const inCart = load(CART_KEY).includes(id);
  const button = el("button", { type: "button", class: "btn", "data-testid": "add-to-cart", text: inCart ? "In your cart" : "Add to cart" });
  if (inCart) button.disabled = true;
  button.addEventListener("click", () => { addToCart(id); button.textContent = "In your cart"; button.disabled = true; });
  const item = catalog.byId.get(id);
  const info = el("div", {}, el("h1", { "data-testid": "product-title", text: name }),
    el("p", { class: "meta", text: known ? `${item.popularity} shoppers interacted with this item.` : "This item is not in the catalog." }), button);
  return [
    el("div", { class: "product" }, swatch, info),
    recRow("Customers also bought", [id], "also-bought"),
    recRow("Recommended for you", load(HISTORY_KEY), "for-you"),
  ];
}

function cartView() {
  const cart = load(CART_KEY);
  const grid = el("ul", { class: "grid", "data-testid": "cart" }, ...cart.map((id) => card(id)));
  const checkout = el("button", { type: "button", class: "btn", "data-testid": "checkout", text: "Check out" });
  checkout.addEventListener("click", () => {
    for (const id of cart) track("purchase", id);
    flush();
    save(CART_KEY, []);
    updateCartCount();
    route();
  });
  return [
    el("h1", { text: `Your cart (${cart.length})` }),
    cart.length ? grid : el("p", { text: "Your cart is empty." }),
    ...(cart.length ? [checkout] : []),
    recRow("Recommended for you", load(HISTORY_KEY), "for-you"),
  ];
}

function badLinkView() {
  return [
    el("h1", { text: "This link is broken" }),
    el("p", { class: "note", role: "status", "data-testid": "bad-link", text: "It does not name a valid item. Nothing was added to your history." }),
    el("a", { href: "#/", class: "btn", text: "Back to the catalog" }),
  ];
}

function route() {
  let hash = null;
  try { hash = decodeURIComponent(location.hash.slice(1) || "/"); } catch { /* a malformed escape: a broken link */ }
  let view;
  if (hash === null) view = badLinkView();
  else if (hash.startsWith("/item/")) {
    const id = hash.slice("/item/".length);
    view = isValidId(id) ? productView(id) : badLinkView();
  } else if (hash === "/cart") view = cartView();
  else if (hash.startsWith("/search/")) view = catalogView(hash.slice("/search/".length));
  else view = catalogView("");
  main.replaceChildren(...view);
  // Which view is on screen, so tests (and scripts) can wait for the one they asked for.
  main.dataset.route = hash ?? "broken-link";
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

async function start() {
  try {
    const r = await fetch("/generated/catalog.json");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const c = await r.json();
    catalog = { items: c.items, byId: new Map(c.items.map((it) => [it.id, it])), dataset: c.dataset, version: c.version };
    document.getElementById("dataset").textContent = `${c.dataset} · model ${c.version}`;
  } catch (err) {
    main.replaceChildren(el("p", { class: "note", text: `The catalog could not be loaded (${err.message}).` }));
    return;
  }
  document.getElementById("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = document.getElementById("search").value;
    location.hash = q.trim() ? `#/search/${encodeURIComponent(q)}` : "#/";
  });
  document.getElementById("forget").addEventListener("click", () => { save(HISTORY_KEY, []); save(CART_KEY, []); updateCartCount(); route(); });
  window.addEventListener("hashchange", route);
  updateCartCount();
  route();
}

start();
