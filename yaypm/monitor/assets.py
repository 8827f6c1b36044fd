"""The status pages' HTML, CSS and JavaScript (served as fixed text; no templates, no build).

Pages fill themselves from JSON with DOM calls and ``textContent`` only, so a caller id such
as ``"<script>" <sip:x@y>`` is shown, never run.
"""

CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#1c2733;background:#fafbfd}
h1{font-size:1.3em;margin:0 0 .4em} h2{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;min-width:40em;background:#fff}
th,td{border-bottom:1px solid #dde3ea;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#eef3fb;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
#status{font-size:.85em;color:#666} #status.down{color:#b00020;font-weight:600}
.state{font-weight:600;color:#8a5a00} a{color:#2a5aa8}
#graph{margin-top:1em;background:#fff;border:1px solid #dde3ea;display:inline-block;padding:.5em;
max-width:calc(100% - 1em);overflow:auto} #graph svg{max-width:100%;height:auto}
.empty{color:#888;font-style:italic} td:first-child{white-space:nowrap}
"""

STATUS_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>yaypm — calls</title>
<link rel="stylesheet" href="/app.css"></head>
<body data-page="status">
<h1>yaypm — active calls: <span id="count">…</span></h1>
<div id="status">connecting…</div>
<table id="calls"><thead><tr><th>call id</th><th>app</th><th>state</th><th>dir</th>
<th>from</th><th>to</th><th>age</th></tr></thead><tbody></tbody></table>
<h2>Recently finished</h2>
<table id="finished"><thead><tr><th>call id</th><th>app</th><th>state</th><th>outcome</th>
<th>duration</th></tr></thead><tbody></tbody></table>
<p><a href="/metrics">metrics</a> · <a href="/calls.json">calls.json</a></p>
<script src="/app.js"></script>
</body></html>
"""

CALL_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>yaypm — call</title>
<link rel="stylesheet" href="/app.css"></head>
<body data-page="call" data-call-url="{call_url}">
<p><a href="/">← all calls</a></p>
<h1>call <span id="call-id"></span> — <span id="call-state" class="state"></span></h1>
<div id="status">connecting…</div>
<div id="graph"><noscript><img src="{call_url}/graph.svg" alt="state graph"></noscript></div>
<h2>Attributes</h2>
<table id="attrs"><tbody></tbody></table>
<script src="/app.js"></script>
</body></html>
"""

JS = r"""
"use strict";
const POLL_MS = 1000;
let polls = 0;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function age(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const s = Math.floor(seconds);
  if (s < 60) return seconds.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " m " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " m";
}

function setStatus(ok, text) {
  const st = document.getElementById("status");
  st.textContent = text;
  st.className = ok ? "" : "down";
  document.body.dataset.polls = String(polls);
}

function callLink(id) {
  const a = el("a", id);
  a.href = "/call/" + encodeURIComponent(id);
  return a;
}

function fillRows(tbody, rows, cells, emptyText) {
  const trs = [];
  for (const c of rows) {
    const tr = document.createElement("tr");
    tr.dataset.callId = c.id;
    tr.dataset.state = c.state;
    for (const make of cells) tr.appendChild(make(c));
    trs.push(tr);
  }
  if (!trs.length) {
    const tr = document.createElement("tr");
    const td = el("td", emptyText, "empty");
    td.colSpan = cells.length;
    tr.appendChild(td);
    trs.push(tr);
  }
  tbody.replaceChildren(...trs);
}

function td(text, cls) { return el("td", text, cls); }

async function pollStatus() {
  try {
    const r = await fetch("/calls.json", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const data = await r.json();
    polls++;
    document.getElementById("count").textContent = String(data.active.length);
    fillRows(document.querySelector("#calls tbody"), data.active, [
      c => { const t = td(); t.appendChild(callLink(c.id)); return t; },
      c => td(c.app), c => td(c.state, "state"), c => td(c.dir),
      c => td(c.from), c => td(c.to), c => td(age(c.age), "num")], "no active calls");
    fillRows(document.querySelector("#finished tbody"), data.finished, [
      c => { const t = td(); t.appendChild(callLink(c.id)); return t; },
      c => td(c.app), c => td(c.state, "state"), c => td(c.outcome),
      c => td(age(c.age), "num")], "none");
    setStatus(true, "live · updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setStatus(false, "disconnected: " + e.message);
  } finally {
    setTimeout(pollStatus, POLL_MS);
  }
}

let shownGraph = null;

async function pollCall() {
  const base = document.body.dataset.callUrl;
  try {
    const r = await fetch(base + "/json", {cache: "no-store"});
    if (r.status === 404) { setStatus(false, "no such call (finished and purged?)"); return; }
    if (!r.ok) throw new Error("HTTP " + r.status);
    const c = await r.json();
    polls++;
    document.getElementById("call-id").textContent = c.id;
    document.getElementById("call-state").textContent = c.state || "";
    document.body.dataset.state = c.state || "";
    const rows = Object.keys(c.attrs).sort().map(k => {
      const tr = document.createElement("tr");
      const v = c.attrs[k];
      tr.appendChild(el("th", k));
      tr.appendChild(td(typeof v === "string" ? v : JSON.stringify(v)));
      return tr;
    });
    document.querySelector("#attrs tbody").replaceChildren(...rows);
    const key = c.graph_key;
    if (key !== shownGraph) {
      const g = await fetch(base + "/graph.svg", {cache: "no-store"});
      if (g.ok) {
        // our own server's SVG (escaped text), not user HTML
        document.getElementById("graph").innerHTML = await g.text();
        shownGraph = key;
        document.body.dataset.graph = key;
      }
    }
    setStatus(true, (c.ended ? "finished · " : "live · ") + "age " + age(c.age));
  } catch (e) {
    setStatus(false, "disconnected: " + e.message);
  }
  setTimeout(pollCall, POLL_MS);
}

if (document.body.dataset.page === "status") pollStatus(); else pollCall();
"""
