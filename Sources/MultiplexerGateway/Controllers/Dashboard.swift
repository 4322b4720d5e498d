/// The operators' dashboard (`GET /dashboard`, ARCHITECTURE §10): one self-contained page — HTML, CSS and
/// JavaScript, nothing from a CDN — that holds no data itself. It asks for the admin key, keeps it in the
/// tab's session storage (never in a URL) and polls `/admin/stats` with it every 1.5 s.
enum Dashboard {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Multiplexer — fleet</title>
<style>
:root { --bg:#0d1117; --panel:#161b22; --line:#30363d; --text:#e6edf3; --dim:#8b949e; --ok:#3fb950; --warn:#d29922; --hot:#f85149; --blue:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display:flex; align-items:center; gap:16px; padding:14px 24px; border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; font-weight:600; letter-spacing:.3px; }
header .meta { color:var(--dim); font-size:13px; }
header .spacer { flex:1; }
.pill { padding:2px 10px; border-radius:999px; font-size:12px; font-weight:600; border:1px solid var(--line); white-space:nowrap; }
.pill.ok { color:var(--ok); border-color:var(--ok); } .pill.warn { color:var(--warn); border-color:var(--warn); } .pill.hot { color:var(--hot); border-color:var(--hot); }
main { padding:20px 24px; display:grid; gap:20px; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:1px; color:var(--dim); margin:0 0 10px; font-weight:600; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(340px, 1fr)); gap:14px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.card.hot { border-color:var(--hot); box-shadow:0 0 0 1px var(--hot) inset; }
.card.cool { border-color:var(--blue); }
.card .title { display:flex; align-items:baseline; gap:8px; margin-bottom:10px; }
.card .title b { font-size:16px; }
.card .title .tier { color:var(--dim); font-size:12px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; min-width:0; }
.card .title .spacer { flex:1; }
.bar { margin:6px 0; }
.bar .lbl { display:flex; justify-content:space-between; font-size:12px; color:var(--dim); }
.bar .track { height:8px; background:#21262d; border-radius:4px; overflow:hidden; margin-top:3px; }
.bar .fill { height:100%; border-radius:4px; background:var(--ok); transition:width .6s ease; }
.bar .fill.warn { background:var(--warn); } .bar .fill.hot { background:var(--hot); }
.stats { display:flex; gap:12px; font-size:12px; color:var(--dim); margin-top:10px; flex-wrap:wrap; }
.stats span b { color:var(--text); font-weight:600; }
table { width:100%; border-collapse:collapse; background:var(--panel); border:1px solid var(--line); border-radius:10px; overflow:hidden; }
th, td { text-align:left; padding:8px 12px; border-bottom:1px solid var(--line); font-size:13px; }
th { color:var(--dim); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.5px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
.two { display:grid; grid-template-columns:1fr 1fr; gap:20px; }
@media (max-width: 900px) { .two { grid-template-columns:1fr; } }
#login { max-width:380px; margin:12vh auto; background:var(--panel); border:1px solid var(--line); border-radius:12px; padding:28px; }
#login h1 { margin:0 0 6px; font-size:20px; } #login p { color:var(--dim); margin:0 0 18px; }
input { width:100%; padding:10px 12px; background:#0d1117; border:1px solid var(--line); border-radius:8px; color:var(--text); font-size:14px; }
button { margin-top:12px; width:100%; padding:10px; border:0; border-radius:8px; background:#238636; color:white; font-weight:600; font-size:14px; cursor:pointer; }
button.link { width:auto; margin:0; padding:4px 10px; background:transparent; border:1px solid var(--line); color:var(--dim); font-weight:500; }
.err { color:var(--hot); margin-top:10px; min-height:1em; font-size:13px; }
.empty { color:var(--dim); font-style:italic; padding:8px 0; }
.hidden { display:none; }
</style>
</head>
<body>
<div id="login">
  <h1>Multiplexer</h1>
  <p>Enter the admin key to watch the fleet. It stays in this tab only.</p>
  <form id="loginForm"><input id="key" type="password" autocomplete="off" placeholder="admin key" aria-label="admin key"><button type="submit" id="connect">Connect</button></form>
  <div class="err" id="loginError"></div>
</div>
<div id="app" class="hidden">
<header>
  <h1>Multiplexer</h1>
  <span class="meta" id="meta"></span>
  <span class="spacer"></span>
  <span class="pill" id="storePill">store</span>
  <span class="meta" id="updated"></span>
  <button class="link" id="logout">Sign out</button>
</header>
<main>
  <section><h2>Providers</h2><div class="grid" id="providers"></div></section>
  <div class="two">
    <section><h2>Model groups</h2><table><thead><tr><th>group</th><th class="num">requests</th><th class="num">req/s</th><th class="num">fallbacks</th><th class="num">exhausted</th><th class="num">continued</th></tr></thead><tbody id="models"></tbody></table></section>
    <section><h2>Nodes</h2><table><thead><tr><th>node</th><th>state</th><th class="num">last seen</th></tr></thead><tbody id="nodes"></tbody></table></section>
  </div>
  <div class="two">
    <section><h2>Client keys</h2><table><thead><tr><th>key</th><th class="num">requests</th><th class="num">rpm</th><th class="num">tpm</th><th class="num">429s</th><th class="num">tokens</th><th class="num">spent today</th></tr></thead><tbody id="keys"></tbody></table></section>
    <section><h2>Recent errors (this node)</h2><table><thead><tr><th>when</th><th>provider</th><th>what</th></tr></thead><tbody id="errors"></tbody></table></section>
  </div>
</main>
</div>
<script>
"use strict";
const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);
let timer = null, previous = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function fmt(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n); }
function level(r) { return r >= 0.9 ? "hot" : r >= 0.7 ? "warn" : ""; }
function usd(micro) { return "$" + (micro / 1e6).toFixed(micro >= 1e8 ? 0 : 2); }
function bar(label, used, limit, format) {
  const show = format || fmt;
  const ratio = limit > 0 ? Math.min(1, used / limit) : 0;
  const fill = el("div", { class: "fill " + level(ratio) });
  fill.style.width = (ratio * 100).toFixed(1) + "%";
  return el("div", { class: "bar", "data-ratio": ratio.toFixed(3) },
    el("div", { class: "lbl" }, el("span", {}, label), el("span", {}, show(used) + " / " + show(limit) + "  ·  " + Math.round(ratio * 100) + "%")),
    el("div", { class: "track" }, fill));
}
function ago(ms) { return ms < 1500 ? "now" : ms < 60000 ? Math.round(ms / 1000) + " s ago" : Math.round(ms / 60000) + " min ago"; }

function render(s) {
  const cfg = s.config || { providers: [], models: [] };
  const limitsOf = Object.fromEntries(cfg.providers.map(p => [p.name, p]));
  $("meta").textContent = "node " + (s.node || "?") + "  ·  " + s.providers.length + " providers  ·  " + s.nodes.length + " live node" + (s.nodes.length === 1 ? "" : "s") + "  ·  config #" + (s.generation || 1);
  const pill = $("storePill");
  pill.textContent = "redis: " + s.store;
  pill.className = "pill " + (s.store === "connected" || s.store === "memory" ? "ok" : s.store === "degraded" ? "warn" : "hot");
  if (s.store === "memory") pill.textContent = "in-memory store";

  const grid = $("providers");
  grid.replaceChildren();
  for (const p of s.providers) {
    const c = limitsOf[p.name] || { limits: {}, tiers: [] };
    const l = c.limits || {};
    const bars = [];
    let hottest = 0;
    for (const [w, label] of [["rpm", "requests / min"], ["tpm", "tokens / min"], ["rpd", "requests / day"], ["tpd", "tokens / day"]]) {
      if (l[w]) { bars.push(bar(label, p.window[w], l[w])); hottest = Math.max(hottest, p.window[w] / l[w]); }
    }
    if (l.max_concurrent) { bars.push(bar("in flight", p.window.in_flight, l.max_concurrent)); hottest = Math.max(hottest, p.window.in_flight / l.max_concurrent); }
    const spent = (p.spend && p.spend.today_micro_usd) || 0;
    if (c.budget && c.budget.daily_micro_usd) {
      bars.push(bar("spend today (UTC)", spent, c.budget.daily_micro_usd, usd));
      hottest = Math.max(hottest, spent / c.budget.daily_micro_usd);
    }
    if (bars.length === 0) bars.push(el("div", { class: "empty" }, "no limits configured · " + p.window.in_flight + " in flight"));
    const cooling = p.cooldown_ms && p.cooldown_ms > 0;
    const badge = p.disabled ? el("span", { class: "pill hot" }, "disabled")
      : cooling ? el("span", { class: "pill warn", "data-cooldown": p.cooldown_reason || "" }, "cooling: " + (p.cooldown_reason || "?") + " · " + Math.ceil(p.cooldown_ms / 1000) + " s")
      : el("span", { class: "pill " + (hottest >= 0.9 ? "hot" : "ok") }, hottest >= 0.9 ? "hot" : "ok");
    const card = el("div", { class: "card" + (cooling || p.disabled ? " cool" : hottest >= 0.9 ? " hot" : ""), "data-provider": p.name },
      el("div", { class: "title" }, el("b", {}, p.name), el("span", { class: "tier" }, (c.tiers || []).join(" · ")), el("span", { class: "spacer" }), badge),
      ...bars,
      el("div", { class: "stats" },
        el("span", {}, el("b", {}, fmt(p.usage.requests)), " requests"),
        el("span", {}, el("b", {}, fmt(p.usage.success)), " ok"),
        el("span", {}, el("b", {}, fmt(p.usage.rate_limited)), " 429"),
        el("span", {}, el("b", {}, fmt(p.usage.errors)), " errors"),
        el("span", {}, el("b", {}, fmt(p.usage.prompt_tokens + p.usage.completion_tokens)), " tokens"),
        ...(c.pricing ? [el("span", {}, el("b", {}, usd(spent)), " today")] : [])));
    grid.append(card);
  }

  const now = Date.now();
  const rows = $("models");
  rows.replaceChildren();
  for (const m of s.models) {
    let rate = "–";
    if (previous && previous.models[m.name] !== undefined) rate = ((m.requests - previous.models[m.name]) / Math.max(0.5, (now - previous.at) / 1000)).toFixed(1);
    rows.append(el("tr", {}, el("td", {}, m.name), el("td", { class: "num" }, fmt(m.requests)), el("td", { class: "num" }, rate),
      el("td", { class: "num" }, fmt(m.fallbacks)), el("td", { class: "num" }, fmt(m.exhausted)), el("td", { class: "num" }, fmt(m.continued || 0))));
  }
  if (!s.models.length) rows.append(el("tr", {}, el("td", { colspan: "6", class: "empty" }, "no traffic yet")));
  previous = { at: now, models: Object.fromEntries(s.models.map(m => [m.name, m.requests])) };

  const nodes = $("nodes");
  nodes.replaceChildren();
  for (const n of s.nodes) {
    const quiet = n.last_seen_ms > 3000;
    nodes.append(el("tr", {}, el("td", {}, n.id + (n.id === s.node ? " (this)" : "")),
      el("td", {}, el("span", { class: "pill " + (quiet ? "warn" : "ok") }, quiet ? "degraded / unreachable" : (n.id === s.node && s.store === "degraded" ? "degraded" : "live"))),
      el("td", { class: "num" }, ago(n.last_seen_ms))));
  }
  if (!s.nodes.length) nodes.append(el("tr", {}, el("td", { colspan: "3", class: "empty" }, s.store === "memory" ? "single node (in-memory store)" : "no heartbeat yet")));

  const keys = $("keys");
  keys.replaceChildren();
  const budgets = Object.fromEntries((cfg.keys || []).map(k => [k.name, k.budget || {}]));
  for (const k of s.keys) {
    const sp = (k.spend && k.spend.today_micro_usd) || 0, b = budgets[k.name] || {};
    const spendText = usd(sp) + (b.daily_micro_usd ? " / " + usd(b.daily_micro_usd) : "");
    const over = b.daily_micro_usd && sp >= 0.9 * b.daily_micro_usd;
    keys.append(el("tr", {}, el("td", {}, k.name), el("td", { class: "num" }, fmt(k.usage.requests)), el("td", { class: "num" }, fmt(k.window.rpm)),
      el("td", { class: "num" }, fmt(k.window.tpm)), el("td", { class: "num" }, fmt(k.usage.rate_limited)), el("td", { class: "num" }, fmt(k.usage.prompt_tokens + k.usage.completion_tokens)),
      el("td", { class: "num" + (over ? " err" : "") }, spendText)));
  }
  if (!s.keys.length) keys.append(el("tr", {}, el("td", { colspan: "7", class: "empty" }, "no client keys")));

  const errors = $("errors");
  errors.replaceChildren();
  for (const e of (s.recent_errors || []).slice(-8).reverse()) {
    errors.append(el("tr", {}, el("td", {}, ago(now - e.at_ms)), el("td", {}, e.provider), el("td", {}, e.what)));
  }
  if (!(s.recent_errors || []).length) errors.append(el("tr", {}, el("td", { colspan: "3", class: "empty" }, "none")));
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function poll() {
  const key = store.getItem("multiplexer.adminKey");
  if (!key) return showLogin("");
  try {
    const r = await fetch("/admin/stats", { headers: { "Authorization": "Bearer " + key }, cache: "no-store" });
    if (r.status === 401) { store.removeItem("multiplexer.adminKey"); return showLogin("That key was refused."); }
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    $("updated").classList.remove("err");
  } catch (e) {
    $("updated").textContent = "cannot reach the gateway (" + e.message + ")";
    $("updated").classList.add("err");
  }
  timer = setTimeout(poll, 1500);
}
function showLogin(message) {
  clearTimeout(timer);
  $("app").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("loginError").textContent = message;
}
$("loginForm").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const k = $("key").value.trim();
  if (!k) return;
  store.setItem("multiplexer.adminKey", k);
  $("key").value = "";
  $("login").classList.add("hidden");
  $("app").classList.remove("hidden");
  poll();
});
$("logout").addEventListener("click", () => { store.removeItem("multiplexer.adminKey"); showLogin(""); });
if (store.getItem("multiplexer.adminKey")) { $("login").classList.add("hidden"); $("app").classList.remove("hidden"); poll(); }
</script>
</body>
</html>
"""#
}
