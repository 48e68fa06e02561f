// Dovecote dashboard: applies bus frames ({topic, activity}) to the page.
// Every activity field is untrusted text: it is only ever set with textContent.
"use strict";

const ROOT = document.body.dataset.root;
const FEED_SIZE = 40;
const $ = (id) => document.getElementById(id);

const services = new Map(); // "builder/1" -> presence object
let currentBuild = null;

function rel(topic) {
  return topic.startsWith(ROOT + "/") ? topic.slice(ROOT.length + 1) : topic;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString();
}

function took(build) {
  if (!build.startTime || !build.endTime) return "";
  const s = (new Date(build.endTime) - new Date(build.startTime)) / 1000;
  return isFinite(s) ? `${s.toFixed(1)} s` : "";
}

// --- build ------------------------------------------------------------------------------

function showBuild(build, summary) {
  currentBuild = build;
  const state = build.state;
  $("build-name").textContent = build.name;
  $("build-state").textContent = state;
  $("build-state").className = `badge badge-${state}`;
  $("bar").className = `bar state-${state}`;
  const fill = $("progress");
  fill.style.width = `${build.progress}%`;
  fill.setAttribute("aria-valuenow", String(build.progress));
  $("progress-label").textContent = `${build.progress}%`;
  $("start").disabled = state === "running";
  $("stop").disabled = state !== "running";
  $("build-note").textContent = summary || "";
}

function showHistory(collection) {
  const body = $("history");
  body.replaceChildren();
  const items = collection.orderedItems || [];
  if (!items.length) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: "6" }, "No builds yet")));
    return;
  }
  for (const b of items) {
    const by = (b.attributedTo && (b.attributedTo.name || b.attributedTo.id)) || "";
    body.append(
      el("tr", {},
        el("td", {}, b.name),
        el("td", {}, el("span", { class: `badge badge-${b.state}` }, b.state)),
        el("td", {}, `${b.progress}%`),
        el("td", {}, by),
        el("td", {}, time(b.startTime)),
        el("td", {}, took(b)),
      ),
    );
  }
}

// --- presence ---------------------------------------------------------------------------

function showServices() {
  const list = $("services");
  list.replaceChildren();
  const keys = [...services.keys()].sort();
  if (!keys.length) list.append(el("li", { class: "empty" }, "no service seen yet"));
  for (const key of keys) {
    const s = services.get(key);
    list.append(
      el("li", { class: `svc svc-${s.status}`, "data-service": key },
        el("span", { class: "dot", "aria-hidden": "true" }),
        el("span", { class: "svc-name" }, s.name),
        el("span", { class: "svc-inst" }, `#${s.instance}`),
        el("span", { class: "svc-status" }, s.status),
      ),
    );
  }
}

// --- the feed ---------------------------------------------------------------------------

function addToFeed(topic, a) {
  const list = $("feed");
  const who = (a.actor && (a.actor.name || a.actor.id)) || "";
  const obj = a.object || {};
  const what = typeof obj === "string" ? obj : obj.name || obj.type || "";
  const detail = a.summary || (obj.progress !== undefined ? `${obj.progress}%` : "");
  list.prepend(
    el("li", {},
      el("time", {}, time(a.published)),
      el("code", {}, rel(topic)),
      el("span", { class: "feed-type" }, a.type),
      el("span", { class: "feed-what" }, `${who} · ${what}`),
      el("span", { class: "feed-detail" }, detail),
    ),
  );
  while (list.children.length > FEED_SIZE) list.lastChild.remove();
}

// --- frames -----------------------------------------------------------------------------

function apply(frame) {
  if (frame.type) return notice(frame);
  const topic = rel(frame.topic);
  const a = frame.activity;
  if (topic === "state/build") showBuild(a.object, a.summary);
  else if (topic === "state/builds") showHistory(a.object);
  else if (topic.startsWith("services/")) {
    services.set(topic.slice("services/".length), a.object);
    showServices();
  } else if (topic.startsWith("events/")) {
    addToFeed(frame.topic, a);
    if (topic === "events/build/rejected") $("build-note").textContent = a.summary || "refused";
  }
}

function notice(frame) {
  if (frame.type === "error") $("build-note").textContent = `Error: ${frame.error}`;
}

// --- the socket, reconnecting with backoff ------------------------------------------------

let delay = 500;
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  const status = $("connection");
  ws.onopen = () => {
    delay = 500;
    status.textContent = "live";
    status.className = "pill pill-ok";
  };
  ws.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    apply(frame);
  };
  ws.onclose = () => {
    status.textContent = "reconnecting…";
    status.className = "pill pill-wait";
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 10000);
  };
}

// --- commands ---------------------------------------------------------------------------

async function command(path, body) {
  const note = $("build-note");
  try {
    const res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) note.textContent = `Error: ${await res.text()}`;
  } catch (err) {
    note.textContent = `Error: ${err}`;
  }
}

$("start").addEventListener("click", () => {
  $("start").disabled = true; // re-enabled by the build's own state
  command("/api/builds", { shouldFail: $("should-fail").checked });
});
$("stop").addEventListener("click", () => {
  command("/api/builds/stop", currentBuild ? { id: currentBuild.id } : {});
});
$("user-select").addEventListener("change", (ev) => {
  location.search = `?as=${encodeURIComponent(ev.target.value)}`;
});

// The state the server rendered with, then live frames.
for (const frame of JSON.parse($("snapshot").textContent)) apply(frame);
connect();
