"""The dashboard's HTML page: controls on the left, the charts in a grid, a status line.

The page loads plotly from ``/dashboard/plotly.min.js`` (no CDN: it works offline), fills the model
and GPU pickers from ``GET /v1/models`` and ``GET /v1/gpus`` (``/dashboard/options`` when the API is
not mounted), and on every control change fetches ``/dashboard/data`` and re-renders each chart with
``Plotly.react``. Query parameters (``?seq_len=4096&gpu=l4``) preset the controls; the URL follows
the controls so a view can be shared. ``#status`` carries ``data-ok="1"`` after a render without
errors; ``window.onerror`` and ``console.error`` write into it (the browser test reads it).
"""

from __future__ import annotations

import json
from typing import Any

from estimator.spec import Checkpointing, Method, Optimizer
from service.dashboard.data import DEFAULTS

PANELS: tuple[tuple[str, str], ...] = (
    ("breakdown", "(a) memory breakdown"),
    ("seq", "(b) peak vs sequence length"),
    ("batch", "(b) peak vs batch size"),
    ("tco", "(d) TCO bill"),
    ("matrix", "(c) fit matrix"),
    ("calibration", "(e) calibration"),
)


def options() -> dict[str, Any]:
    """The choices the controls offer: catalog models and GPUs, methods, optimizers, checkpointing."""
    from estimator.gpus import gpu_catalog
    from estimator.models import model_catalog

    return {
        "models": [{"id": m.id} for m in model_catalog().values()],
        "gpus": [{"id": g.id, "name": g.name, "usable_bytes": g.usable_bytes} for g in gpu_catalog().values()],
        "methods": [m.value for m in Method],
        "optimizers": [o.value for o in Optimizer],
        "checkpointing": [c.value for c in Checkpointing],
        "defaults": DEFAULTS,
    }


def _config() -> dict[str, Any]:
    opts = options()
    return {k: opts[k] for k in ("methods", "optimizers", "checkpointing", "defaults")} | {
        "panels": [p for p, _ in PANELS]
    }


def render_page() -> str:
    """The page's HTML, with the static choices embedded as JSON."""
    cfg = json.dumps(_config()).replace("</", "<\\/")
    panels = "\n".join(
        f'      <section class="panel{" wide" if pid in ("matrix", "calibration") else ""}" id="panel-{pid}"'
        f"{' hidden' if pid in ('tco', 'calibration') else ''}>"
        f'<div class="chart" id="chart-{pid}" aria-label="{label}"></div></section>'
        for pid, label in PANELS
    )
    return _TEMPLATE.replace("__CONFIG__", cfg).replace("__PANELS__", panels)


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunecast · planning dashboard</title>
<link rel="icon" href="data:,">
<style>
  * { box-sizing: border-box; }
  html, body { margin: 0; height: 100%; }
  body { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
         background: #f4f5f7; display: grid; grid-template-columns: 212px 1fr; }
  aside { background: #fff; border-right: 1px solid #ddd; padding: 10px 12px; overflow-y: auto;
          height: 100vh; position: sticky; top: 0; }
  aside h1 { font-size: 15px; margin: 0 0 8px; }
  aside label { display: block; font-size: 11px; color: #555; margin: 7px 0 2px; }
  aside select, aside input { width: 100%; font: inherit; padding: 3px 4px; border: 1px solid #bbb;
                              border-radius: 3px; background: #fff; }
  aside .hint { font-size: 11px; color: #777; margin-top: 10px; }
  main { padding: 8px 10px; min-width: 0; }
  #summary { background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 6px 10px;
             margin-bottom: 8px; min-height: 32px; }
  #summary .fit { color: #1b7837; font-weight: 600; } #summary .oom { color: #b2182b; font-weight: 600; }
  #status { font-size: 11px; color: #666; margin-top: 2px; }
  #status[data-ok="0"].error { color: #b2182b; }
  #problems { color: #b2182b; margin: 0; padding-left: 18px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 8px; }
  .panel { background: #fff; border: 1px solid #ddd; border-radius: 4px; min-width: 0; }
  .panel.wide { grid-column: 1 / -1; }
  .chart { height: 330px; width: 100%; }
  .wide .chart { height: 300px; }
  .busy { opacity: .55; transition: opacity .15s; }
</style>
</head>
<body>
<aside>
  <h1>tunecast</h1>
  <form id="controls" onsubmit="return false">
    <label for="model">model</label><select id="model" name="model"></select>
    <label for="method">method</label><select id="method" name="method"></select>
    <label for="gpu">GPU</label><select id="gpu" name="gpu"></select>
    <label for="batch_size">micro-batch</label>
    <input id="batch_size" name="batch_size" type="number" min="1" step="1">
    <label for="seq_len">sequence length</label>
    <input id="seq_len" name="seq_len" type="number" min="1" step="1">
    <label for="gradient_checkpointing">gradient checkpointing</label>
    <select id="gradient_checkpointing" name="gradient_checkpointing"></select>
    <label for="optimizer">optimizer</label><select id="optimizer" name="optimizer"></select>
    <label for="lora_r">LoRA rank</label><input id="lora_r" name="lora_r" type="number" min="1" step="1">
    <label for="tokens">tokens per run</label><input id="tokens" name="tokens" type="number" min="1" step="1">
  </form>
  <div class="hint">Charts follow the controls; the address bar keeps the view. Hover the fit matrix
    for time and cost per run.</div>
  <div class="hint" id="calibration-note"></div>
</aside>
<main>
  <div id="summary">loading…</div>
  <div id="status" data-ok="0" data-state="loading" role="status"></div>
  <div class="grid">
__PANELS__
  </div>
</main>
<script src="/dashboard/plotly.min.js"></script>
<script>
"use strict";
const CFG = __CONFIG__;
const FIELDS = ["model", "method", "gpu", "batch_size", "seq_len", "gradient_checkpointing", "optimizer",
                "lora_r", "tokens"];
const GIB = 1073741824;
const statusEl = document.getElementById("status");
const errors = [];

function noteError(msg) {
  errors.push(String(msg));
  statusEl.dataset.ok = "0";
  statusEl.dataset.state = "error";
  statusEl.dataset.error = errors.join(" | ");
  statusEl.className = "error";
  statusEl.textContent = "error: " + errors.join(" | ");
}
window.onerror = function (msg, src, line, col) {
  noteError(msg + " (" + src + ":" + line + ":" + col + ")");
};
window.addEventListener("unhandledrejection", function (ev) { noteError("unhandled: " + ev.reason); });
const origConsoleError = console.error.bind(console);
console.error = function () {
  noteError(Array.from(arguments).join(" "));
  origConsoleError.apply(null, arguments);
};

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fill(select, items, labelOf) {
  select.replaceChildren();
  for (const it of items) {
    const id = typeof it === "string" ? it : it.id;
    select.appendChild(el("option", {value: id}, labelOf ? labelOf(it) : id));
  }
}
function listOf(body, key) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body[key])) return body[key];
  if (body && Array.isArray(body.items)) return body.items;
  if (body && Array.isArray(body.data)) return body.data;
  return null;
}
async function getJSON(url) {
  const r = await fetch(url, {headers: {"Accept": "application/json"}});
  if (!r.ok) return null;
  return r.json();
}
async function loadChoices() {
  let models = listOf(await getJSON("/v1/models"), "models");
  let gpus = listOf(await getJSON("/v1/gpus"), "gpus");
  if (!models || !gpus) {
    const opts = await getJSON("/dashboard/options");
    models = models || opts.models;
    gpus = gpus || opts.gpus;
  }
  fill(document.getElementById("model"), models);
  fill(document.getElementById("gpu"), [{id: "none", name: "(no GPU)"}].concat(gpus), function (g) {
    const usable = g.usable_bytes ? " · " + (g.usable_bytes / GIB).toFixed(1) + " GiB" : "";
    return g.id === "none" ? g.name : g.id + usable;
  });
  fill(document.getElementById("method"), CFG.methods);
  fill(document.getElementById("optimizer"), CFG.optimizers);
  fill(document.getElementById("gradient_checkpointing"), CFG.checkpointing);
}
function ensureOption(select, value) {
  if (![...select.options].some(function (o) { return o.value === value; })) {
    select.appendChild(el("option", {value: value}, value));
  }
}
function applyParams() {
  const q = new URLSearchParams(location.search);
  for (const f of FIELDS) {
    const input = document.getElementById(f);
    const v = q.has(f) ? q.get(f) : String(CFG.defaults[f]);
    if (input.tagName === "SELECT") ensureOption(input, v);
    input.value = v;
  }
}
function params() {
  const q = new URLSearchParams();
  for (const f of FIELDS) q.set(f, document.getElementById(f).value);
  return q;
}
async function loadCalibrationNote() {
  const r = await fetch("/v1/calibration", {headers: {"Accept": "application/json"}});
  if (!r.ok) return;
  const c = await r.json();
  const n = c.records !== undefined ? c.records : (c.count !== undefined ? c.count : "?");
  const gpus = Array.isArray(c.gpus) ? c.gpus.filter((g) => g !== "cpu") : [];
  document.getElementById("calibration-note").textContent =
    "calibration: " + (c.present === false ? "defaults (no fitted file)"
      : gpus.length ? "fitted for " + gpus.join(", ") : "CPU records only; GPU terms are defaults")
    + " · records: " + n;
}
function gib(b) { return (b / GIB).toFixed(1) + " GiB"; }
function showSummary(s) {
  const box = document.getElementById("summary");
  box.replaceChildren();
  box.appendChild(el("b", {}, s.model + " · " + s.method));
  const peak = " · peak " + gib(s.peak_device) + " on device (" + s.peak_phase + ")";
  box.appendChild(document.createTextNode(peak));
  if (s.gpu) {
    box.appendChild(document.createTextNode(" · " + s.gpu + " usable " + gib(s.usable_bytes) + ": "));
    const verdict = s.fits ? "fits, headroom " + gib(s.headroom_bytes)
                           : "does not fit, short by " + gib(-s.headroom_bytes);
    box.appendChild(el("span", {"class": s.fits ? "fit" : "oom"}, verdict));
    if (s.largest_fit) {
      box.appendChild(document.createTextNode(" · largest batch " + s.largest_fit.batch_size +
                                              ", largest seq " + s.largest_fit.seq_len.toLocaleString()));
    }
  }
  if (s.tokens_per_second) {
    const tps = Math.round(s.tokens_per_second).toLocaleString();
    box.appendChild(document.createTextNode(" · " + tps + " tokens/s per GPU"));
  }
}
function showProblems(body) {
  const box = document.getElementById("summary");
  box.replaceChildren(el("b", {}, "The inputs have problems:"));
  const ul = el("ul", {id: "problems"});
  const problems = (body && body.error && body.error.problems) || [];
  for (const p of problems) ul.appendChild(el("li", {}, (p.field ? p.field + ": " : "") + p.message));
  if (!problems.length) {
    ul.appendChild(el("li", {}, (body && body.error && body.error.message) || "request failed"));
  }
  box.appendChild(ul);
}
// No mode bar (it covers the titles); double-click a chart to reset its zoom.
const PLOT_CONFIG = {responsive: true, displaylogo: false, displayModeBar: false};
let generation = 0;
async function render() {
  const mine = ++generation;
  const q = params();
  history.replaceState(null, "", location.pathname + "?" + q.toString());
  statusEl.dataset.ok = "0";
  statusEl.dataset.state = "loading";
  document.querySelector(".grid").classList.add("busy");
  const r = await fetch("/dashboard/data?" + q.toString(), {headers: {"Accept": "application/json"}});
  const body = await r.json();
  if (mine !== generation) return;
  document.querySelector(".grid").classList.remove("busy");
  if (!r.ok) {
    showProblems(body);
    statusEl.dataset.state = "invalid";
    statusEl.textContent = "fix the inputs to update the charts";
    return;
  }
  showSummary(body.summary);
  let rendered = 0;
  for (const id of CFG.panels) {
    const panel = document.getElementById("panel-" + id);
    const div = document.getElementById("chart-" + id);
    const fig = body.figures[id];
    if (!fig) { panel.hidden = true; Plotly.purge(div); continue; }
    panel.hidden = false;
    await Plotly.react(div, fig.data, fig.layout, PLOT_CONFIG);
    rendered += 1;
  }
  statusEl.dataset.rendered = String(rendered);
  if (errors.length === 0) {
    statusEl.dataset.ok = "1";
    statusEl.dataset.state = "ok";
    statusEl.className = "";
    statusEl.textContent = rendered + " charts · updated " + new Date().toLocaleTimeString();
  }
}
async function main() {
  if (typeof Plotly === "undefined") { noteError("plotly.js did not load"); return; }
  await loadChoices();
  applyParams();
  for (const f of FIELDS) document.getElementById(f).addEventListener("change", function () {
    render().catch(function (e) { noteError(e); });
  });
  loadCalibrationNote().catch(function () {});
  await render();
}
main().catch(function (e) { noteError(e && e.stack ? e.stack : e); });
</script>
</body>
</html>
"""
