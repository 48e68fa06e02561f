// Dovecote operations page (services/gateway/operations/operations_page.py): every worker's health as small
// charts the page draws itself (SVG), the dead letters with a replay button, one trace.
// What comes from the bus is untrusted text: only ever set with textContent or attributes.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const W = 220; // chart width, in the SVG's own units
const H = 48;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// --- numbers as people read them ---------------------------------------------------------

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 0)} ms`;
  return `${s.toFixed(s < 10 ? 2 : 0)} s`;
}

function rate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? `${r.toFixed(0)}/s` : `${r.toFixed(r >= 10 ? 1 : 2)}/s`;
}

function bytes(n) {
  if (n >= 1048576) return `${(n / 1048576).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function ago(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// --- charts: a line per series over the last `window` seconds ------------------------------

// Where the charts' time axis starts: the oldest report held, at most `window` ago (a
// federation up for two minutes fills the charts, not their last tenth).
function since(view) {
  let first = view.now;
  for (const s of view.services) for (const w of s.workers) if (w.series.t.length) first = Math.min(first, w.series.t[0]);
  return Math.max(view.now - view.window, Math.min(first, view.now - 60));
}

function chart(view, series, lines, format, label) {
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const start = view.start;
  const span = view.now - start;
  let top = 0;
  for (const [key] of lines) for (const v of series[key] || []) if (v !== null && v > top) top = v;
  const scale = top > 0 ? top : 1;
  box.append(svg("line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }));
  for (const [key, cls] of lines) {
    let d = "";
    let pen = "M";
    (series[key] || []).forEach((v, i) => {
      if (v === null) { pen = "M"; return; } // no message in that step: a gap, not a zero
      const x = ((series.t[i] - start) / span) * W;
      const y = H - 2 - (v / scale) * (H - 6);
      d += `${pen}${x.toFixed(1)} ${y.toFixed(1)} `;
      pen = "L";
    });
    if (d) box.append(svg("path", { d: d.trim(), class: `line ${cls}`, "data-series": key }));
  }
  const top_text = svg("text", { x: W - 2, y: 9, class: "scale", "text-anchor": "end" });
  top_text.textContent = top > 0 ? format(top) : "";
  box.append(top_text);
  box.setAttribute("aria-label", `${label}, the last ${ago(span)}, top ${format(top)}`);
  return box;
}

function figure(title, value, graph, extra) {
  return el("figure", { class: "metric" },
    el("figcaption", {}, el("span", { class: "metric-name" }, title), el("b", { class: "metric-value" }, value), extra || ""),
    graph);
}

// --- health -------------------------------------------------------------------------------

function worker(view, w) {
  const t = w.totals;
  const state = w.silent ? "silent" : w.connected ? "up" : "down";
  const head = el("div", { class: "worker-head" },
    el("span", { class: `dot dot-${state}`, title: state }),
    el("b", {}, `${w.service}.${w.instance}`),
    el("span", { class: "hint" }, w.silent ? `silent for ${ago(w.age)}` : `${w.quiet ? "idle, nothing new since its" : ""} report ${ago(w.age)} ago · up since ${clock(w.started)}`.trim()));
  const now = w.now;
  const charts = el("div", { class: "worker-charts" },
    figure("messages", rate(now.rate), chart(view, w.series, [["rate", "rate"]], rate, "messages handled a second")),
    figure("latency p50 / p99", `${seconds(now.p50)} / ${seconds(now.p99)}`,
      chart(view, w.series, [["p50", "p50"], ["p99", "p99"]], seconds, "handler latency p50 and p99")),
    figure("lag", seconds(now.lag), chart(view, w.series, [["lag", "lag"]], seconds, "lag")));
  const facts = [
    ["handled", t.handled], ["parked", t.parked], ["retries", t.retries], ["skipped", t.skipped],
    ["published", t.published], ["reconnects", t.reconnects], ["in flight", t.inflight],
    ["unacked", t.unacknowledged],
  ];
  if (t.outbox !== null && t.outbox !== undefined) facts.push(["outbox", t.outbox]);
  for (const [name, value] of Object.entries(w.readings)) {
    const shown = name.endsWith("_bytes") ? bytes(value) : value;
    facts.push([name.replace(/_total$/, "").replace(/_/g, " "), shown]);
  }
  const list = el("dl", { class: "worker-facts" });
  for (const [name, value] of facts) {
    list.append(el("div", { class: `fact${(name === "parked" || name === "reconnects") && value > 0 ? " fact-warn" : ""}` },
      el("dt", {}, name), el("dd", {}, value)));
  }
  const topics = el("details", { class: "worker-topics" }, el("summary", {}, "by topic"));
  const rows = el("ul", {});
  for (const [topic, count] of Object.entries(w.handled)) rows.append(el("li", {}, el("code", {}, topic), ` ${count}`));
  topics.append(rows);
  return el("article", { class: `worker worker-${state}`, "data-worker": `${w.service}.${w.instance}` },
    head, charts, list, topics);
}

function showHealth(view) {
  view.start = since(view);
  const box = $("services");
  box.replaceChildren();
  if (!view.services.length) {
    box.append(el("p", { class: "empty" }, "No reports yet: workers send one every few seconds."));
  }
  for (const service of view.services) {
    const rates = service.workers.map((w) => w.now.rate || 0);
    const total = rates.reduce((a, b) => a + b, 0);
    const section = el("section", { class: "service", "data-service": service.name },
      el("h3", {}, service.name, el("span", { class: "hint" },
        ` · ${service.workers.length} worker${service.workers.length === 1 ? "" : "s"} · ${rate(total)}`)));
    for (const w of service.workers) section.append(worker(view, w));
    box.append(section);
  }
  $("health-note").textContent = `updated ${new Date(view.now * 1000).toLocaleTimeString()} · the last ${ago(view.now - view.start)}`;
  showRecent(view.traces || []);
}

async function refreshHealth() {
  try {
    const res = await fetch("/api/operations", { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    showHealth(await res.json());
  } catch (err) {
    $("health-note").textContent = `not updated: ${err.message || err}`;
  }
}

// --- dead letters --------------------------------------------------------------------------

async function refreshLetters() {
  const body = $("letters");
  try {
    const res = await fetch("/api/deadletters", { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    const report = await res.json();
    body.replaceChildren();
    for (const letter of report.orderedItems || []) {
      const button = el("button", { class: "btn btn-small btn-go replay", type: "button", "data-letter": letter.id }, "Replay");
      button.addEventListener("click", () => replay({ items: [letter.id] }));
      body.append(el("tr", { "data-letter": letter.id },
        el("td", {}, el("time", { datetime: letter.published }, clock(letter.published))),
        el("td", {}, letter.service),
        el("td", {}, el("code", {}, letter.topic)),
        el("td", { class: "why" }, letter.summary),
        el("td", {}, letter.attempts),
        el("td", { class: "replays" }, letter.replays ? `${letter.replays}×` : "no"),
        el("td", {}, button)));
    }
    if (!body.children.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: 7 }, "No dead letters.")));
    $("letters-note").textContent = `${report.totalItems} held`;
  } catch (err) {
    $("letters-note").textContent = `could not list them: ${err.message || err}`;
  }
}

async function replay(selection) {
  $("letters-note").textContent = "replaying…";
  try {
    const res = await fetch("/api/deadletters/replay", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(selection),
    });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    const report = await res.json();
    await refreshLetters();
    $("letters-note").textContent = `replayed ${report.totalItems}: each goes back to the service that parked it`;
  } catch (err) {
    $("letters-note").textContent = `not replayed: ${err.message || err}`;
  }
}

// --- one trace -------------------------------------------------------------------------------

function showRecent(recent) {
  const list = $("recent");
  list.replaceChildren();
  for (const r of recent) {
    const link = el("a", { href: `?trace=${encodeURIComponent(r.context)}`, "data-context": r.context }, r.context);
    link.addEventListener("click", (e) => { e.preventDefault(); trace(r.context); });
    list.append(el("li", {}, link, el("span", { class: "hint" }, ` ${r.first} · ${r.steps} step${r.steps === 1 ? "" : "s"} · ${clock(r.last)}`)));
  }
  if (!recent.length) list.append(el("li", { class: "empty" }, "none yet"));
}

function timeline(found) {
  const steps = found.orderedItems;
  const first = new Date(steps[0].published).getTime();
  const span = Math.max(1, new Date(steps[steps.length - 1].published).getTime() - first);
  const table = el("table", { class: "ops-table steps stacked" },
    el("thead", {}, el("tr", {}, ...["+ms", "Δ ms", "when", "", "service", "topic", "what"].map((h) => el("th", {}, h)))));
  const body = el("tbody", {});
  let previous = first;
  for (const s of steps) {
    const at = new Date(s.published).getTime();
    const mark = svg("svg", { viewBox: "0 0 100 10", class: "step-mark", "aria-hidden": "true" });
    const x0 = ((previous - first) / span) * 98 + 1;
    const x1 = ((at - first) / span) * 98 + 1;
    mark.append(svg("line", { x1: 0, y1: 5, x2: 100, y2: 5, class: "axis" }));
    mark.append(svg("line", { x1: x0, y1: 5, x2: x1, y2: 5, class: "gap" }));
    mark.append(svg("circle", { cx: x1, cy: 5, r: 3, class: "dot-step" }));
    body.append(el("tr", { class: "step", "data-topic": s.name },
      el("td", { class: "num" }, String(at - first)),
      el("td", { class: "num delta" }, String(at - previous)),
      el("td", {}, el("time", { datetime: s.published }, clock(s.published))),
      el("td", { class: "mark" }, mark),
      el("td", {}, s.service),
      el("td", {}, el("code", {}, s.name)),
      el("td", { class: "what" }, el("b", {}, s.activity), ` ${s.actor} → ${s.summary}`)));
    previous = at;
  }
  table.append(body);
  return table;
}

async function trace(query) {
  query = query.trim();
  $("trace-input").value = query;
  const note = $("trace-note");
  const box = $("trace");
  box.replaceChildren();
  if (!query) return;
  history.replaceState(null, "", `?trace=${encodeURIComponent(query)}`);
  note.textContent = "looking…";
  try {
    const res = await fetch(`/api/trace/${encodeURIComponent(query)}`, { headers: { Accept: "application/json" } });
    const found = await res.json();
    if (!res.ok) {
      note.textContent = found.error || `${res.status}`;
      for (const c of found.candidates || []) {
        const link = el("a", { href: `?trace=${encodeURIComponent(c)}` }, c);
        link.addEventListener("click", (e) => { e.preventDefault(); trace(c); });
        box.append(el("p", {}, link));
      }
      return;
    }
    const steps = found.orderedItems;
    const total = new Date(steps[steps.length - 1].published) - new Date(steps[0].published);
    note.textContent = "";
    box.append(el("p", { class: "trace-head" }, el("code", {}, found.context),
      ` · ${found.totalItems} activit${found.totalItems === 1 ? "y" : "ies"} · ${total} ms from the first to the last`,
      found.partial ? " · older steps were dropped from the index" : ""));
    box.append(el("div", { class: "scroll-x" }, timeline(found)));
  } catch (err) {
    note.textContent = `could not trace: ${err.message || err}`;
  }
}

// --- start ---------------------------------------------------------------------------------

const initial = JSON.parse($("ops-data").textContent);
showHealth(initial);
$("letters-refresh").addEventListener("click", refreshLetters);
$("letters-replay-all").addEventListener("click", () => replay({ all: true }));
$("trace-form").addEventListener("submit", (e) => { e.preventDefault(); trace($("trace-input").value); });
refreshLetters();
if ($("trace-input").value) trace($("trace-input").value);
const every = Math.min(...initial.services.flatMap((s) => s.workers.map((w) => w.interval)), 5) * 1000;
setInterval(refreshHealth, Math.max(every, 1000));
