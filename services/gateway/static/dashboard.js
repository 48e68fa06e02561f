// Dovecote dashboard: applies bus frames ({topic, activity}) to the page.
// Every activity field is untrusted text: it is only ever set with textContent.
"use strict";

const ROOT = document.body.dataset.root;
const ME = document.body.dataset.user; // "" when signed out
// Sent with every state change: the gateway also checks Origin (services/gateway/edge.py).
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const FEED_SIZE = 40;
const GALLERY_SIZE = 24;
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
  $("start").disabled = !ME || state === "running";
  $("stop").disabled = !ME || state !== "running";
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
      el("span", { class: "feed-detail", title: detail }, detail),
    ),
  );
  while (list.children.length > FEED_SIZE) list.lastChild.remove();
}

// --- photos -----------------------------------------------------------------------------

const tiles = new Map(); // image id (its URL) -> tile element

// Images are served by this gateway: use the path, so the page works whatever host name
// the gateway's PUBLIC_URL uses (and the CSP's img-src 'self' holds).
function localPath(href) {
  try {
    const u = new URL(href, location.href);
    return u.pathname.startsWith("/images/") ? u.pathname : null;
  } catch { return null; }
}

function showImage(image, published) {
  if (!image || !image.id) return;
  let tile = tiles.get(image.id);
  if (!tile) {
    const by = image.attributedTo ? image.attributedTo.name || "" : "";
    tile = el("li", { class: "tile", "data-image": image.id },
      el("div", { class: "frame pending" },
        el("span", { class: "spinner", "aria-hidden": "true" }),
        el("span", { class: "pending-text" }, "resizing…"),
      ),
      el("div", { class: "caption" },
        el("span", { class: "caption-title" }, image.name || "Untitled"),
        el("span", { class: "caption-by" }, [by, time(published)].filter(Boolean).join(" · ")),
      ),
    );
    tiles.set(image.id, tile);
    const list = $("gallery");
    list.querySelector(".gallery-empty")?.remove();
    list.prepend(tile);
    while (list.children.length > GALLERY_SIZE) {
      tiles.delete(list.lastChild.dataset.image);
      list.lastChild.remove();
    }
  }
  if (image.preview && image.preview.length) showPreview(image);
}

function showPreview(image) {
  const tile = tiles.get(image.id);
  if (!tile) {
    showImage(image, null); // a page opened after the upload: the tile comes with its preview
    return;
  }
  const previews = (image.preview || [])
    .map((p) => ({ href: localPath(p.href), width: Number(p.width) || 0 }))
    .filter((p) => p.href);
  if (!previews.length) return;
  const best = previews.find((p) => p.width >= 256) || previews[previews.length - 1];
  const img = el("img", { alt: image.name || "photo", src: best.href, decoding: "async" });
  img.srcset = previews.map((p) => `${p.href} ${p.width}w`).join(", ");
  img.sizes = "(max-width: 820px) 45vw, 220px";
  const frame = tile.querySelector(".frame");
  frame.className = "frame ready";
  frame.replaceChildren(img);
  tile.classList.add("resized");
}

async function upload(ev) {
  ev.preventDefault();
  const form = $("upload-form");
  const note = $("upload-note");
  const button = $("upload-button");
  if (!$("upload-file").files.length) {
    note.textContent = "Choose a photo first.";
    return;
  }
  button.disabled = true;
  note.className = "note note-info";
  note.textContent = "Uploading…";
  try {
    const res = await fetch("/api/images", {
      method: "POST",
      headers: { "X-CSRF-Token": CSRF },
      body: new FormData(form),
    });
    if (!res.ok) {
      note.className = "note";
      note.textContent = `Not uploaded: ${await res.text()}`;
      return;
    }
    note.textContent = "";
    form.reset();
    $("upload-file-name").textContent = "Choose a photo (JPEG, PNG, GIF, WebP)";
  } catch (err) {
    note.className = "note";
    note.textContent = `Not uploaded: ${err}`;
  } finally {
    button.disabled = false;
  }
}

// --- leaderboard --------------------------------------------------------------------------

const lastPoints = new Map();
function showLeaderboard(board) {
  const list = $("leaderboard");
  list.replaceChildren();
  const items = board.orderedItems || [];
  if (!items.length) list.append(el("li", { class: "empty" }, "No points yet"));
  const top = Math.max(1, ...items.map((s) => s.points));
  let mine = 0;
  items.forEach((s, i) => {
    const me = s.preferredUsername === ME;
    if (me) mine = s.points;
    const before = lastPoints.get(s.id);
    const bar = el("span", { class: "leader-bar" });
    bar.style.width = `${Math.round((100 * Math.max(0, s.points)) / top)}%`;
    const row = el("li", { class: `leader${me ? " me" : ""}`, "data-user": s.preferredUsername || "" },
      el("span", { class: "rank" }, String(i + 1)),
      el("span", { class: "leader-name" }, s.name || s.preferredUsername || s.id),
      el("span", { class: "leader-points" }, String(s.points)),
      bar,
    );
    if (before !== undefined && before !== s.points) row.classList.add("bump");
    lastPoints.set(s.id, s.points);
    list.append(row);
  });
  if (ME) $("my-points-value").textContent = String(mine);
}

// --- frames -----------------------------------------------------------------------------

function apply(frame) {
  if (frame.type) return notice(frame);
  const topic = rel(frame.topic);
  const a = frame.activity;
  if (topic === "state/build") showBuild(a.object, a.summary);
  else if (topic === "state/builds") showHistory(a.object);
  else if (topic === "state/leaderboard") showLeaderboard(a.object);
  else if (ME && topic === `users/${ME}/notifications`) Inbox.add(a);
  else if (ME && topic === `users/${ME}/inbox`) Inbox.state(a);
  else if (topic.startsWith("services/")) {
    services.set(topic.slice("services/".length), a.object);
    showServices();
  } else if (topic.startsWith("events/")) {
    addToFeed(frame.topic, a);
    if (topic === "events/build/rejected") $("build-note").textContent = a.summary || "refused";
    else if (topic === "events/image/created") showImage(a.object, a.published);
    else if (topic === "events/image/resized") showPreview(a.object);
    else if (topic === "events/people/followed") Follows.seen(a, true);
    else if (topic === "events/people/unfollowed") Follows.seen(a, false);
  }
}

function notice(frame) {
  if (frame.type === "error") $("build-note").textContent = `Error: ${frame.error}`;
  else if (frame.type === "hello") {
    epoch = frame.epoch;
    if (!frame.resumed) lastSeq = frame.seq; // a fresh start: the state follows, then seq+1
  } else if (frame.type === "cannot-resume") reloadState(frame.reason);
}

// --- resuming: the gateway numbers its frames (docs/websocket.md) --------------------------

// Where this page resumes from: first the moment the server rendered it, then the last
// numbered frame it applied. A reconnect sends both; the gateway replays what followed.
let epoch = document.body.dataset.epoch || null;
let lastSeq = Number(document.body.dataset.seq || 0);
let reloads = 0;

// The gateway could not replay what this page missed (it restarted, or the page was away
// too long): the retained state (build, history, leaderboard, presence) follows on the
// socket; what is not retained is fetched again or marked as a gap.
async function reloadState(reason) {
  reloads += 1;
  document.body.dataset.reloads = String(reloads);
  const list = $("feed");
  list.prepend(el("li", { class: "feed-gap" }, el("span", {}, `missed events: ${reason}`)));
  Inbox.reload(); // notifications of the gap are in the notifier's inbox
  try {
    const res = await fetch("/api/images/recent");
    if (res.ok) for (const image of (await res.json()).reverse()) showImage(image, null);
  } catch { /* the gallery catches up with the next upload */ }
}

// --- the socket, reconnecting with backoff ------------------------------------------------

let delay = 500;
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // Who the socket is for is the session's person (the cookie), never a parameter.
  let url = `${proto}://${location.host}/ws`;
  if (epoch) url += `?since=${lastSeq}&epoch=${encodeURIComponent(epoch)}`;
  const ws = new WebSocket(url);
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
    // After applying: a page dropped mid-frame asks for this frame again.
    if (typeof frame.seq === "number" && frame.seq > lastSeq) lastSeq = frame.seq;
  };
  ws.onclose = () => {
    status.textContent = "reconnecting…";
    status.className = "pill pill-wait";
    setTimeout(connect, delay + Math.random() * delay * 0.5); // jitter: not all at once
    delay = Math.min(delay * 2, 10000);
  };
}

// --- commands ---------------------------------------------------------------------------

async function command(path, body) {
  const note = $("build-note");
  try {
    const res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
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
if (ME) {
  $("upload-form").addEventListener("submit", upload);
  $("upload-file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    $("upload-file-name").textContent = file ? file.name : "Choose a photo";
  });
}
Inbox.start();
Follows.start();

// The state the server rendered with, then live frames.
for (const image of JSON.parse($("gallery-data").textContent).reverse()) showImage(image, null);
for (const frame of JSON.parse($("snapshot").textContent)) apply(frame);
connect();
