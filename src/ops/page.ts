/**
 * The operations page: one HTML document with its CSS and script inline (no CDN,
 * nothing to fetch but the event stream), both bound to the response's CSP nonce.
 * Every figure is written with textContent and every chart built with DOM calls,
 * so nothing in a snapshot (log lines included) is ever parsed as markup.
 */
export function opsPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>12345 intake gateway · operations</title>
<style nonce="${nonce}">
:root { --bg:#f5f6f8; --card:#fff; --ink:#1d2330; --muted:#6b7385; --up:#1a8a4a; --down:#c62828; --warn:#b86e00; --push:#3b5bdb; --bar:#3b82f6; --rej:#e57373; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, "Noto Sans CJK SC", "WenQuanYi Zen Hei", sans-serif; background:var(--bg); color:var(--ink); }
header { display:flex; align-items:baseline; gap:1rem; padding:.8rem 1.2rem; background:#1d2330; color:#fff; }
header h1 { font-size:1.1rem; margin:0; font-weight:600; }
header .meta { color:#b8c0d0; font-size:.85rem; }
#live { margin-left:auto; font-size:.85rem; }
#live.ok::before { content:"● "; color:#4ade80; } #live.lost::before { content:"● "; color:#f87171; }
main { display:grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap:1rem; padding:1rem 1.2rem; }
section { background:var(--card); border-radius:8px; padding:.8rem 1rem; box-shadow:0 1px 2px rgba(0,0,0,.08); }
section.wide { grid-column: 1 / -1; }
h2.next { margin-top:1rem; }
h2 { font-size:.8rem; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); margin:0 0 .6rem; }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:.35rem .5rem; border-bottom:1px solid #eceef2; vertical-align:middle; }
th { font-weight:500; color:var(--muted); font-size:.8rem; }
td.n, th.n { text-align:right; font-variant-numeric: tabular-nums; }
.state { display:inline-block; padding:.05rem .45rem; border-radius:4px; font-size:.8rem; color:#fff; }
.state.up { background:var(--up); } .state.down { background:var(--down); } .state.degraded { background:var(--warn); } .state.push { background:var(--push); }
.figures { display:grid; grid-template-columns: repeat(2, 1fr); gap:.6rem; }
.figure .v { font-size:1.6rem; font-weight:600; font-variant-numeric: tabular-nums; }
.figure .l { color:var(--muted); font-size:.8rem; }
.figure.bad .v { color:var(--down); } .figure.warn .v { color:var(--warn); }
.err { color:var(--down); font-size:.85rem; word-break:break-word; }
svg.chart { display:block; }
ol#errors { list-style:none; margin:0; padding:0; max-height:24rem; overflow:auto; font:12px/1.4 ui-monospace, monospace; }
ol#errors li { padding:.25rem 0; border-bottom:1px solid #eceef2; word-break:break-word; }
ol#errors .lvl-error, ol#errors .lvl-fatal { color:var(--down); } ol#errors .lvl-warn { color:var(--warn); }
.muted { color:var(--muted); }
</style>
</head>
<body>
<header><h1>12345 intake gateway · operations</h1><span class="meta" id="instance"></span><span class="meta" id="updated"></span><span id="live" class="lost">connecting…</span></header>
<main>
<section class="wide"><h2>Channels</h2>
<table id="channels"><thead><tr><th>channel</th><th>link</th><th class="n">last minute</th><th class="n">last hour</th><th class="n">rejected (hour)</th><th>last accepted</th><th>last 60 minutes</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Broker</h2>
<div class="figures">
<div class="figure"><div class="v"><span id="broker-state" class="state">…</span></div><div class="l">RabbitMQ link</div></div>
<div class="figure" id="fig-backlog"><div class="v" id="outbox-depth">–</div><div class="l">outbox backlog</div></div>
<div class="figure"><div class="v" id="outbox-age">–</div><div class="l">oldest unpublished</div></div>
<div class="figure"><div class="v" id="store-kind">–</div><div class="l">store</div></div>
</div>
<div class="err" id="broker-error"></div>
</section>
<section><h2>Deadlines</h2>
<div class="figures">
<div class="figure"><div class="v" id="dl-open">–</div><div class="l">open tickets</div></div>
<div class="figure" id="fig-warn"><div class="v" id="dl-warning">–</div><div class="l">past their warning</div></div>
<div class="figure" id="fig-breach"><div class="v" id="dl-breached">–</div><div class="l">breached today</div></div>
<div class="figure"><div class="v" id="dl-next">–</div><div class="l">next due</div></div>
</div>
<div class="err" id="store-error"></div>
</section>
<section><h2>Receipts and replies failing</h2>
<table id="outbound"><thead><tr><th>kind</th><th class="n">failed (hour)</th><th class="n">retrying (hour)</th><th class="n">failed since start</th><th class="n">sent since start</th></tr></thead><tbody></tbody></table>
<h2 class="next">Rejected input, last hour</h2>
<table id="reasons"><tbody></tbody></table>
</section>
<section class="wide"><h2>Last warnings and errors (newest first, masked as in the log)</h2><ol id="errors"></ol></section>
</main>
<script nonce="${nonce}">
"use strict";
const $ = (id) => document.getElementById(id);
const el = (tag, attrs, text) => { const e = document.createElement(tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); if (text !== undefined) e.textContent = String(text); return e; };
const SVG = "http://www.w3.org/2000/svg";
const fmtTime = (ms) => ms == null ? "–" : new Date(ms).toLocaleTimeString([], { hour12: false });
function fmtDur(ms) {
  if (ms == null) return "–";
  const s = Math.round(Math.abs(ms) / 1000);
  const t = s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m " + (s % 60) + "s" : Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return ms < 0 ? t + " ago" : t;
}
function chart(series, rejected) {
  const w = 180, h = 32, n = series.length, bw = w / n;
  const max = Math.max(1, ...series.map((v, i) => v + (rejected[i] || 0)));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart"); svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", w); base.setAttribute("y1", h - .5); base.setAttribute("y2", h - .5); base.setAttribute("stroke", "#d0d4dc");
  svg.appendChild(base);
  series.forEach((v, i) => {
    const r = rejected[i] || 0;
    const hv = (v / max) * (h - 2), hr = (r / max) * (h - 2);
    if (v > 0) { const b = document.createElementNS(SVG, "rect"); b.setAttribute("x", i * bw + .5); b.setAttribute("width", Math.max(1, bw - 1)); b.setAttribute("y", h - hv); b.setAttribute("height", hv); b.setAttribute("fill", "var(--bar)"); svg.appendChild(b); }
    if (r > 0) { const b = document.createElementNS(SVG, "rect"); b.setAttribute("x", i * bw + .5); b.setAttribute("width", Math.max(1, bw - 1)); b.setAttribute("y", h - hv - hr); b.setAttribute("height", hr); b.setAttribute("fill", "var(--rej)"); svg.appendChild(b); }
  });
  const title = document.createElementNS(SVG, "title");
  title.textContent = "accepted per minute (blue), rejected (red), oldest left";
  svg.appendChild(title);
  return svg;
}
function render(s) {
  $("instance").textContent = s.instance;
  $("updated").textContent = "updated " + fmtTime(s.at);
  const tbody = $("channels").tBodies[0];
  tbody.replaceChildren(...s.channels.map((c) => {
    const tr = el("tr", { "data-channel": c.channel });
    tr.appendChild(el("td", {}, c.channel));
    const link = el("td", {}); link.appendChild(el("span", { class: "state " + c.link.state }, c.link.state === "push" ? "push" : c.link.state)); link.appendChild(document.createTextNode(" " + c.link.text)); tr.appendChild(link);
    tr.appendChild(el("td", { class: "n received-minute" }, c.lastMinute));
    tr.appendChild(el("td", { class: "n received-hour" }, c.lastHour));
    tr.appendChild(el("td", { class: "n rejected-hour" }, c.rejectedHour));
    tr.appendChild(el("td", { class: "last-accepted" }, c.lastAcceptedAt == null ? "–" : fmtTime(c.lastAcceptedAt) + " (" + fmtDur(c.lastAcceptedAt - s.at) + ")"));
    const td = el("td", {}); td.appendChild(chart(c.series, c.rejectedSeries)); tr.appendChild(td);
    return tr;
  }));
  const b = $("broker-state"); b.textContent = s.broker.state; b.className = "state " + s.broker.state;
  $("broker-error").textContent = s.broker.state === "down" && s.broker.lastError ? s.broker.lastError : "";
  $("outbox-depth").textContent = s.outbox.depth;
  $("fig-backlog").className = "figure" + (s.outbox.depth > 0 && s.broker.state === "down" ? " warn" : "");
  $("outbox-age").textContent = s.outbox.oldestAgeMs == null ? "none" : fmtDur(s.outbox.oldestAgeMs);
  $("store-kind").textContent = s.storeKind;
  const d = s.deadlines;
  $("dl-open").textContent = d ? d.open : "?";
  $("dl-warning").textContent = d ? d.pastWarning : "?";
  $("dl-breached").textContent = d ? d.breachedToday : "?";
  $("dl-next").textContent = d && d.nextDue != null ? fmtDur(d.nextDue - s.at) : "none";
  $("fig-warn").className = "figure" + (d && d.pastWarning > 0 ? " warn" : "");
  $("fig-breach").className = "figure" + (d && d.breachedToday > 0 ? " bad" : "");
  $("store-error").textContent = s.storeError ? "store: " + s.storeError : "";
  $("outbound").tBodies[0].replaceChildren(...Object.entries(s.outbound).map(([kind, o]) => {
    const tr = el("tr", { "data-kind": kind });
    tr.appendChild(el("td", {}, kind));
    tr.appendChild(el("td", { class: "n" }, o.failedHour)); tr.appendChild(el("td", { class: "n" }, o.retryHour));
    tr.appendChild(el("td", { class: "n" }, o.failed)); tr.appendChild(el("td", { class: "n" }, o.sent));
    return tr;
  }));
  const reasons = Object.entries(s.rejectedByReason);
  $("reasons").tBodies[0].replaceChildren(...(reasons.length ? reasons.map(([r, n]) => { const tr = el("tr"); tr.appendChild(el("td", {}, r)); tr.appendChild(el("td", { class: "n" }, n)); return tr; }) : [(() => { const tr = el("tr"); tr.appendChild(el("td", { class: "muted" }, "none")); return tr; })()]));
  $("errors").replaceChildren(...(s.errors.length ? s.errors.map((e) => {
    const li = el("li", { class: "lvl-" + e.level });
    li.textContent = e.time + " " + e.level.toUpperCase() + " " + e.msg + (e.detail ? " " + e.detail : "");
    return li;
  }) : [el("li", { class: "muted" }, "none since start")]));
}
const live = $("live");
const source = new EventSource("ops/events");
source.addEventListener("snapshot", (ev) => { live.className = "ok"; live.textContent = "live"; render(JSON.parse(ev.data)); });
source.onerror = () => { live.className = "lost"; live.textContent = "reconnecting…"; };
</script>
</body>
</html>
`;
}
