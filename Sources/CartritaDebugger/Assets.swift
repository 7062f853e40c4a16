// The debugger's page: hand-written HTML, CSS and JavaScript, no framework and no CDN, embedded
// in the binary so `cartrita debug` works on a machine without network. Log data is put into the
// page with textContent only (never as HTML): a message may hold anything.

import CartritaEnvelope
import Foundation

enum DebuggerAssets {
    static func indexHTML(basePath: String) -> String {
        // The base path goes in as a JSON string (quotes escaped), never as markup.
        let base = JSON.string(basePath).rendered().replacingOccurrences(of: "<", with: "\\u003c")
        return template.replacingOccurrences(of: "__BASE_JSON__", with: base).replacingOccurrences(of: "__BASE__", with: basePath)
    }

    static let template = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Cartrita debugger</title>
<link rel="stylesheet" href="__BASE__/app.css">
<script>window.CARTRITA_BASE = __BASE_JSON__;</script>
</head>
<body>
<header>
  <h1>Cartrita debugger</h1>
  <span id="summary">loading…</span>
  <span id="status" class="status">loading</span>
</header>
<div id="error-banner" class="banner" hidden></div>
<section id="controls">
  <div class="filters">
    <label>correlation <input id="f-correlation" size="38" placeholder="task id (UUID)"></label>
    <label>actor <select id="f-actor"><option value="">any</option></select></label>
    <label>type <select id="f-type"><option value="">any</option></select></label>
    <button id="apply">filter</button>
    <button id="clear">clear</button>
  </div>
  <div class="steps">
    <button id="first" title="first">«</button>
    <button id="prev" title="previous (←)">◀</button>
    <input id="slider" type="range" min="1" max="1" value="1">
    <button id="next" title="next (→)">▶</button>
    <button id="last" title="last">»</button>
    <input id="seq-input" type="number" min="1">
    <span id="seq-shown">seq –</span>
  </div>
</section>
<main>
  <section id="timeline-pane">
    <h2>Timeline</h2>
    <table id="timeline">
      <colgroup><col class="c-seq"><col class="c-time"><col class="c-type"><col class="c-route"><col class="c-what"><col class="c-flags"></colgroup>
      <thead><tr><th>seq</th><th>time</th><th>type</th><th>from → to</th><th>what</th><th>flags</th></tr></thead>
      <tbody></tbody>
    </table>
    <div class="pager"><button id="page-prev">earlier</button> <button id="page-next">later</button></div>
  </section>
  <section id="side">
    <h2>Actor state</h2>
    <label>actor <select id="actor-select"></select></label>
    <div id="state-meta"></div>
    <pre id="state"></pre>
    <h3>Diff from the previous step</h3>
    <div id="diff-meta"></div>
    <ul id="diff"></ul>
    <h2>Causal tree</h2>
    <div id="trace-meta"></div>
    <div id="trace"></div>
    <h2>Record</h2>
    <pre id="record"></pre>
  </section>
</main>
<script src="__BASE__/app.js"></script>
</body>
</html>
"""#

    static let appCSS = #"""
body { font: 13px/1.35 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { display: flex; gap: 1.2em; align-items: baseline; padding: .5em 1em; background: #20242c; color: #eee; }
header h1 { font-size: 16px; margin: 0; }
.status { margin-left: auto; opacity: .8; }
.banner { background: #fde2e1; color: #8a1c17; padding: .4em 1em; }
#controls { padding: .5em 1em; border-bottom: 1px solid #ddd; background: #fff; }
#controls .filters, #controls .steps { display: flex; gap: .6em; align-items: center; flex-wrap: wrap; margin: .2em 0; }
#slider { flex: 1; min-width: 200px; }
#seq-shown { font-weight: 600; min-width: 7em; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1em; padding: 0 1em 1em; }
h2 { font-size: 14px; margin: .8em 0 .3em; }
h3 { font-size: 13px; margin: .6em 0 .2em; }
#timeline-pane { min-width: 0; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
col.c-seq { width: 4.5em; } col.c-time { width: 8.5em; } col.c-type { width: 8.5em; } col.c-flags { width: 12em; }
col.c-route { width: 30%; }
th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #eee; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #eef3ff; }
tr.current { background: #dce8ff; outline: 2px solid #3b6fd8; }
tr.error td { color: #a31511; }
tr.error .flags { font-weight: 700; }
tr.retry .flags { color: #a15c00; font-weight: 700; }
pre { background: #fff; border: 1px solid #ddd; padding: .5em; max-height: 22em; overflow: auto; font-size: 12px; }
#diff li.added { color: #1b6e20; } #diff li.removed { color: #a31511; } #diff li.changed { color: #6b4a00; }
#trace ul { list-style: none; padding-left: 1.1em; margin: 0; border-left: 1px dotted #bbb; }
#trace li { margin: 1px 0; }
#trace .hop.error { color: #a31511; font-weight: 600; }
#trace .hop.retry { color: #a15c00; }
#trace .hop.current { background: #dce8ff; }
.pager { margin: .4em 0; }
"""#

    static let appJS = #"""
"use strict";
// The debugger page. Its state (at, actor, correlation, type) lives in the URL's query, so any
// view can be linked and reloaded. The log is never loaded whole: the timeline asks the API for
// one page of records around the current seq.
const BASE = window.CARTRITA_BASE || "";
const query = new URLSearchParams(location.search);
const KEY = query.get("key");
const view = {
  at: Number(query.get("at")) || 0,
  actor: query.get("actor") || "",
  correlation: query.get("correlation") || "",
  type: query.get("type") || "",
  first: 1, last: 0, rows: [], pageFirst: 0, pageLast: 0,
};
const $ = (id) => document.getElementById(id);

async function api(path, params) {
  const url = new URL(BASE + "/api/" + path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  const response = await fetch(url, { headers: KEY ? { Authorization: "Bearer " + KEY } : {} });
  const body = await response.json();
  if (!response.ok) throw new Error((body.error ? body.error.code + ": " + body.error.message : response.status));
  return body;
}

function timelineFilters() {
  return { actor: $("f-actor").value, type: view.type, correlation: view.correlation };
}

function writeURL() {
  const params = new URLSearchParams();
  if (KEY) params.set("key", KEY);
  params.set("at", view.at);
  if (view.actor) params.set("actor", view.actor);
  if (view.correlation) params.set("correlation", view.correlation);
  if (view.type) params.set("type", view.type);
  if ($("f-actor").value) params.set("filter_actor", $("f-actor").value);
  history.replaceState(null, "", location.pathname + "?" + params.toString());
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function showError(error) {
  const banner = $("error-banner");
  banner.hidden = false;
  banner.textContent = String(error.message || error);
}

function renderTimeline(rows) {
  const body = $("timeline").querySelector("tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.seq = row.seq;
    const flags = [];
    if (row.error) { tr.classList.add("error"); flags.push("ERROR " + row.error.code); }
    if (row.retry_count > 0) { tr.classList.add("retry"); flags.push("RETRY " + row.retry_count); }
    if (row.seq === view.at) tr.classList.add("current");
    tr.append(text("td", row.seq), text("td", row.time.slice(11, 23)), text("td", row.type),
      text("td", row.sender + " → " + row.recipient), text("td", row.summary), text("td", flags.join(" "), "flags"));
    tr.title = row.correlation_id + (row.error ? "\n" + row.error.message : "");
    tr.addEventListener("click", () => go(row.seq));
    body.append(tr);
  }
}

function renderState(state) {
  $("state-meta").textContent = "digest " + state.digest.slice(0, 16) + "… · last delivery seq " + state.last_seq +
    " · from snapshot " + state.snapshot_seq + " + " + state.replayed + " replayed";
  $("state").textContent = JSON.stringify(state.state, null, 2);
  const list = $("diff");
  list.replaceChildren();
  if (!state.diff) { $("diff-meta").textContent = "no earlier step"; return; }
  $("diff-meta").textContent = "seq " + state.diff.from_seq + " → " + state.diff.to_seq + ": " +
    state.diff.changes.length + " change(s)" + (state.diff.omitted ? ", " + state.diff.omitted + " more" : "");
  for (const change of state.diff.changes) {
    list.append(text("li", change.path + ": " + JSON.stringify(change.old) + " → " + JSON.stringify(change.new), change.kind));
  }
}

function renderTrace(trace) {
  $("trace-meta").textContent = "task " + trace.correlation_id + " · " + (trace.task_type || "?") + " · " + trace.messages +
    " messages · " + trace.duration_ms + " ms · retries " + trace.retries + " · errors " + trace.errors + " · outcome " + (trace.outcome || "none");
  const build = (hops) => {
    const list = document.createElement("ul");
    for (const hop of hops) {
      const item = document.createElement("li");
      let label = "#" + hop.seq + " " + hop.type + " " + hop.sender + " → " + hop.recipient;
      if (hop.status) label += " [" + hop.status + "]";
      if (hop.hop_ms !== undefined) label += " " + hop.hop_ms + " ms";
      if (hop.retry_count > 0) label += " retry " + hop.retry_count;
      if (hop.error) label += " ERROR " + hop.error.code + ": " + hop.error.message;
      const span = text("span", label, "hop" + (hop.error ? " error" : "") + (hop.retry_count > 0 ? " retry" : "") + (hop.seq === view.at ? " current" : ""));
      span.addEventListener("click", () => go(hop.seq));
      item.append(span);
      if (hop.children.length) item.append(build(hop.children));
      list.append(item);
    }
    return list;
  };
  $("trace").replaceChildren(build(trace.roots));
}

async function go(seq) {
  view.at = Math.min(Math.max(Number(seq) || view.last, view.first), view.last);
  $("slider").value = view.at;
  $("seq-input").value = view.at;
  $("seq-shown").textContent = "seq " + view.at;
  $("status").textContent = "loading seq " + view.at;
  writeURL();
  try {
    const page = await api("records", Object.assign({ around: view.at, limit: 40 }, timelineFilters()));
    view.rows = page.records;
    renderTimeline(page.records);
    const record = await api("record", { seq: view.at });
    $("record").textContent = JSON.stringify(record, null, 2);
    const actor = view.actor || record.envelope.recipient;
    if ($("actor-select").value !== actor) $("actor-select").value = actor;
    if ($("actor-select").value === actor) {
      renderState(await api("state", { at: view.at, actor: actor }));
    } else {
      $("state-meta").textContent = actor + " is not replayed here";
      $("state").textContent = "";
      $("diff").replaceChildren();
    }
    renderTrace(await api("trace", { correlation: view.correlation || record.envelope.correlation_id }));
    $("status").textContent = "ready seq " + view.at;
    document.body.dataset.ready = "1";
  } catch (error) {
    showError(error);
    $("status").textContent = "error";
  }
}

async function step(direction) {
  const f = timelineFilters();
  if (!f.actor && !f.type && !f.correlation) return go(view.at + direction);
  // The next matching record; a sparse filter may need several budgeted searches to reach it.
  let position = direction > 0 ? { from: view.at + 1 } : { before: view.at };
  for (let searches = 0; searches < 50; searches++) {
    const page = await api("records", Object.assign({}, position, { limit: 1 }, f));
    if (page.records.length) return go(page.records[0].seq);
    const next = direction > 0 ? page.next_from : page.prev_before;
    if (next === null || next === undefined) break;
    position = direction > 0 ? { from: next } : { before: next };
    $("status").textContent = "searching at seq " + next;
  }
  $("status").textContent = "no " + (direction > 0 ? "later" : "earlier") + " record matches";
}

async function start() {
  try {
    const summary = await api("summary");
    view.first = summary.first_seq; view.last = summary.last_seq;
    $("summary").textContent = summary.source + " · seq " + summary.first_seq + "–" + summary.last_seq + " · " + summary.actors.length + " actors";
    for (const actor of summary.actors) {
      $("f-actor").append(new Option(actor, actor));
      $("actor-select").append(new Option(actor, actor));
    }
    for (const type of summary.types) $("f-type").append(new Option(type, type));
    $("f-actor").value = query.get("filter_actor") || "";
    $("f-type").value = view.type;
    $("f-correlation").value = view.correlation;
    $("slider").min = view.first; $("slider").max = view.last;
    if (view.last === 0) { $("status").textContent = "empty log"; return; }
    await go(view.at || view.last);
  } catch (error) {
    showError(error);
  }
}

$("prev").addEventListener("click", () => step(-1));
$("next").addEventListener("click", () => step(1));
$("first").addEventListener("click", () => go(view.first));
$("last").addEventListener("click", () => go(view.last));
$("slider").addEventListener("change", (event) => go(event.target.value));
$("seq-input").addEventListener("change", (event) => go(event.target.value));
$("actor-select").addEventListener("change", (event) => { view.actor = event.target.value; go(view.at); });
$("apply").addEventListener("click", () => {
  view.correlation = $("f-correlation").value.trim();
  view.type = $("f-type").value;
  go(view.at);
});
$("clear").addEventListener("click", () => {
  view.correlation = ""; view.type = "";
  $("f-correlation").value = ""; $("f-type").value = ""; $("f-actor").value = "";
  go(view.at);
});
$("page-prev").addEventListener("click", () => { if (view.rows.length) go(view.rows[0].seq); });
$("page-next").addEventListener("click", () => { if (view.rows.length) go(view.rows[view.rows.length - 1].seq); });
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT") return;
  if (event.key === "ArrowLeft") step(-1);
  if (event.key === "ArrowRight") step(1);
});
start();
"""#
}
