// Dovecote dashboard: applies bus frames ({topic, activity}) to the page.
// Every activity field is untrusted text: it is only ever set with textContent.
"use strict";

const ROOT = document.body.dataset.root;
const ME = document.body.dataset.user; // "" when signed out
// Sent with every state change: the gateway also checks Origin (services/gateway/web/edge.py).
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const FEED_SIZE = 40;
const GALLERY_SIZE = 24;
const $ = (id) => document.getElementById(id);

const services = new Map(); // "builder/1" -> presence object
let currentBuild = null;
// Start was pressed while this build was the current one ("" for none): until another
// build (or a refusal) comes back, Start waits. null: not waiting.
let starting = null;

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
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
}

// A time for a caption: the hour today, the day otherwise (one short line, never wrapped).
function when(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d)) return "";
  const today = d.toDateString() === new Date().toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false })
    : d.toLocaleDateString([], { day: "numeric", month: "short" });
}

// --- presence: who is online decides what a control can do ---------------------------------

// true: a worker of the service is online; false: all those seen are offline; null: none
// seen yet (the page does not call a service offline before it has heard of it).
function online(name) {
  const seen = [...services.values()].filter((s) => s.name === name);
  if (!seen.length) return null;
  return seen.some((s) => s.status === "online");
}

// --- the bus: can this gateway reach it (services/gateway/bus/reachability.py) --------------

// As the server drew the page (its banner), then as the socket says: in hello, and a "bus"
// frame at each change. Cut off, nothing on the page moves and what is sent is queued.
let bus = { reachable: $("bus-banner").hidden, since: "", waiting: 0 };
let socketOpen = false;

function utc(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : `${d.toISOString().slice(11, 19)} UTC`;
}

function waitingWords(n) {
  if (!n) return "nothing waits in its outbox";
  return n === 1 ? "1 upload or command waits in its outbox" : `${n} uploads or commands wait in its outbox`;
}

function showBus(b) {
  if (!b) return;
  bus = b;
  const banner = $("bus-banner");
  banner.textContent = b.reachable ? "" :
    `This gateway cannot reach the message bus (since ${utc(b.since)}): what you see may be ` +
    `out of date, and ${waitingWords(b.waiting)}; they go out when it is back.`;
  banner.hidden = b.reachable;
  showPill();
  showServices();
}

// "live" only when the page's socket is open and the gateway behind it hears the bus.
function showPill() {
  const pill = $("connection");
  if (!socketOpen) [pill.textContent, pill.className] = ["reconnecting…", "pill pill-wait"];
  else if (!bus.reachable) [pill.textContent, pill.className] = ["cut off from the bus", "pill pill-bad"];
  else [pill.textContent, pill.className] = ["live", "pill pill-ok"];
}

// What an accepted upload or command says while the bus cannot be reached.
function queuedWords(answer) {
  return answer && answer.queued
    ? `Queued: this gateway cannot reach the message bus; ${waitingWords(answer.waiting)}.`
    : "";
}

function took(build) {
  if (!build.startTime || !build.endTime) return "";
  const s = (new Date(build.endTime) - new Date(build.startTime)) / 1000;
  return isFinite(s) ? `${s.toFixed(1)} s` : "";
}

// --- build ------------------------------------------------------------------------------

function showBuild(build, summary) {
  if (starting !== null && build.id !== starting) starting = null; // its build began
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
  // Why it ended: failed (and how), stopped (by whom); nothing for a success or a run.
  const why = build.summary || (state !== "running" && state !== "succeeded" ? summary : "");
  $("build-why").textContent = why || "";
  $("build-why").hidden = !why;
  showControls();
}

// Every control that cannot be used says why, beside it (the server draws the same).
function showControls() {
  const running = currentBuild && currentBuild.state === "running";
  const builder = online("builder");
  let start = null;
  let stop = null;
  if (!ME) start = stop = "sign in to start or stop builds";
  else {
    if (builder === false) start = "builder is offline";
    else if (running) start = `${currentBuild.name} is running`;
    else if (starting !== null) start = "starting…";
    if (!running) stop = "no build is running";
    else if (builder === false) stop = "builder is offline";
  }
  const same = start && start === stop; // said once (Stop is described by both lines)
  for (const [id, why] of [["start", start], ["stop", stop]]) {
    $(id).disabled = Boolean(why);
    const line = $(`${id}-why`);
    if (same) line.textContent = id === "start" ? `${why[0].toUpperCase()}${why.slice(1)}.` : "";
    else line.textContent = why ? `${id === "start" ? "Start" : "Stop"}: ${why}` : "";
    line.hidden = !line.textContent;
  }
  $("should-fail").disabled = Boolean(start);
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
    const result = el("td", { class: "result" }, el("span", { class: `badge badge-${b.state}` }, b.state));
    if (b.summary) result.append(el("span", { class: "result-why" }, b.summary));
    body.append(
      el("tr", {},
        el("td", { class: "nowrap" }, b.name),
        result,
        el("td", { class: "wide" }, `${b.progress}%`),
        el("td", {}, by),
        el("td", { class: "wide nowrap" }, time(b.startTime)),
        el("td", { class: "nowrap" }, took(b)),
      ),
    );
  }
}

// --- presence ---------------------------------------------------------------------------

function showServices() {
  showControls();
  showPending();
  const list = $("services");
  list.replaceChildren();
  const keys = [...services.keys()].sort();
  if (!keys.length) list.append(el("li", { class: "empty" }, "no service seen yet"));
  // Cut off from the bus, presence is what was last heard, not what is.
  const stale = bus.reachable ? "" : " svc-stale";
  for (const key of keys) {
    const s = services.get(key);
    list.append(
      el("li", { class: `svc svc-${s.status}${stale}`, "data-service": key },
        el("span", { class: "dot", "aria-hidden": "true" }),
        el("span", { class: "svc-name" }, s.name),
        el("span", { class: "svc-inst" }, `#${s.instance}`),
        el("span", { class: "svc-status" }, bus.reachable ? s.status : `last known: ${s.status}`),
      ),
    );
  }
}

// --- the feed ---------------------------------------------------------------------------

const fed = new Set(); // activity ids in the feed: a replay may bring one again

function addToFeed(topic, a) {
  const list = $("feed");
  if (a.id && fed.has(a.id)) return;
  if (a.id) fed.add(a.id);
  list.querySelector(".feed-empty")?.remove();
  const who = (a.actor && (a.actor.name || a.actor.id)) || "";
  const obj = a.object || {};
  const what = typeof obj === "string" ? obj : obj.name || obj.type || "";
  const detail = a.summary || (obj.progress !== undefined ? `${obj.progress}%` : "");
  list.prepend(
    el("li", {},
      el("time", { datetime: a.published || "" }, time(a.published)),
      el("code", {}, rel(topic)),
      el("span", { class: "feed-type" }, a.type),
      el("span", { class: "feed-what" }, `${who} · ${what}`),
      el("span", { class: "feed-detail", title: detail }, detail),
    ),
  );
  while (list.children.length > FEED_SIZE) list.lastElementChild.remove();
}

// --- photos -----------------------------------------------------------------------------

const tiles = new Map(); // image id (its URL) -> tile element
let shownTiles = GALLERY_SIZE; // how many the gallery keeps (more once older ones are loaded)

// Images are served by this gateway: use the path, so the page works whatever host name
// the gateway's PUBLIC_URL uses (and the CSP's img-src 'self' holds).
function localPath(href) {
  try {
    const u = new URL(href, location.href);
    return u.pathname.startsWith("/images/") ? u.pathname : null;
  } catch { return null; }
}

// What a tile without its thumbnail is waiting for, in words: the resizer may be offline.
function waiting() {
  if (!bus.reachable) return "waiting: this gateway cannot reach the message bus";
  return online("resizer") === false
    ? "waiting for the resizer: it is offline; the thumbnail comes when it is back"
    : "resizing…";
}

function showPending() {
  const text = waiting();
  for (const node of document.querySelectorAll("#gallery .pending-text")) node.textContent = text;
}

// The same tile the server draws (templates/photos/tile.html): a link to the photo's page,
// shaped like the photo (its width to height, bounded), never cropped.
function makeTile(image, published) {
  const by = image.attributedTo ? image.attributedTo.name || "" : "";
  const at = published || image.published || "";
  const ratio = Math.min(3, Math.max(0.5, (Number(image.width) || 1) / (Number(image.height) || 1)));
  const page = `/photos/${encodeURIComponent(String(image.id).split("/").pop())}`;
  const tile = el("li", { class: "tile fresh", "data-image": image.id },
    el("a", { class: "tile-link", href: page },
      el("span", { class: "frame pending" },
        el("span", { class: "spinner", "aria-hidden": "true" }),
        el("span", { class: "pending-text" }, waiting()),
      ),
      el("span", { class: "caption" },
        el("span", { class: "caption-title" }, image.name || "Untitled"),
        el("span", { class: "caption-by" },
          by, by && at ? " · " : "", el("time", { datetime: at }, when(at))),
      ),
    ),
  );
  tile.style.setProperty("--ratio", ratio.toFixed(3));
  return tile;
}

function showImage(image, published, older = false) {
  if (!image || !image.id) return;
  let tile = tiles.get(image.id);
  if (!tile) {
    tile = makeTile(image, published);
    tiles.set(image.id, tile);
    const list = $("gallery");
    list.querySelector(".gallery-empty")?.remove();
    if (older) list.append(tile);
    else {
      list.prepend(tile);
      if (shownTiles > GALLERY_SIZE) shownTiles += 1; // older ones were asked for: keep them
    }
    let trimmed = false;
    while (list.children.length > shownTiles) {
      tiles.delete(list.lastElementChild.dataset.image);
      list.lastElementChild.remove();
      trimmed = true;
    }
    if (trimmed) olderFrom(list.lastElementChild); // what fell off is the next "older" page
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
    .filter((p) => p.href)
    .sort((a, b) => a.width - b.width);
  if (!previews.length) return;
  const best = previews.find((p) => p.width >= 256) || previews[previews.length - 1];
  const img = el("img", { alt: "", src: best.href, decoding: "async" });
  img.srcset = previews.map((p) => `${p.href} ${p.width}w`).join(", ");
  img.sizes = "(max-width: 600px) 90vw, 320px";
  const frame = tile.querySelector(".frame");
  frame.className = "frame ready";
  frame.replaceChildren(img);
  tile.classList.add("resized");
}

// The "Older photos" link, for the photos after this tile (made if the page had none).
function olderFrom(tile) {
  const id = String(tile.dataset.image).split("/").pop();
  let link = $("gallery-more");
  if (!link) {
    link = el("a", { id: "gallery-more", class: "btn btn-quiet" }, "Older photos");
    link.addEventListener("click", moreImages);
    $("gallery").after(el("p", { class: "pager" }, link));
  }
  link.dataset.before = id;
  link.href = `/photos?before=${encodeURIComponent(id)}`;
}

// Older photos, in place; the link goes to /photos?before=… where there is no script.
async function moreImages(ev) {
  ev.preventDefault();
  const link = $("gallery-more");
  try {
    const res = await fetch(`/api/images?before=${encodeURIComponent(link.dataset.before)}`);
    if (!res.ok) throw new Error(await res.text());
    const page = await res.json();
    const found = page.orderedItems || [];
    shownTiles += found.length;
    for (const image of found) showImage(image, null, true);
    const last = found[found.length - 1];
    if (page.next && last) olderFrom(tiles.get(last.id));
    else link.parentElement.remove();
    // Keyboard: go on from the first photo just loaded.
    tiles.get(found[0]?.id)?.querySelector("a")?.focus();
  } catch (err) {
    $("upload-note").textContent = `Older photos not loaded: ${err.message || err}`;
  }
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
    note.textContent = queuedWords(await res.json());
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
    const row = el("li", { class: `leader${me ? " mine" : ""}`, "data-user": s.preferredUsername || "" },
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
  else if (topic.startsWith("state/") && StateCards.apply(topic, a)) return;
  else if (topic.startsWith("services/")) {
    services.set(topic.slice("services/".length), a.object);
    showServices();
  } else if (topic.startsWith("events/")) {
    addToFeed(frame.topic, a);
    if (topic === "events/build/rejected") {
      $("build-note").textContent = a.summary || "refused";
      starting = null;
      showControls();
    } else if (topic === "events/image/created") showImage(a.object, a.published);
    else if (topic === "events/image/resized") showPreview(a.object);
    else if (topic === "events/people/followed") Follows.seen(a, true);
    else if (topic === "events/people/unfollowed") Follows.seen(a, false);
  }
}

function notice(frame) {
  if (frame.type === "error") {
    $("build-note").textContent = `Error: ${frame.error}`;
    starting = null;
    showControls();
  }
  else if (frame.type === "hello") {
    if (!frame.resumed) cursor = frame.after; // a fresh start: where this gateway stands
    stateUpTo = frame.resumed ? 0 : frame.seq; // the state that follows a fresh start
    showBus(frame.bus);
  } else if (frame.type === "bus") showBus(frame);
  else if (frame.type === "accepted" && frame.queued) $("build-note").textContent = queuedWords(frame);
  else if (frame.type === "cannot-resume") reloadState(frame.reason);
}

// --- resuming on any gateway (docs/websocket.md) ------------------------------------------

// Where this page resumes from: the keys of the last frames it applied (every gateway names
// a frame by the same key), first those of the moment the server rendered it. A reconnect
// sends them; whichever gateway it reaches replays what followed.
const WINDOW = 24; // keys kept: as many as a gateway reads (replay.py: CURSOR_KEYS)
let cursor = (document.body.dataset.after || "").split(".").filter(Boolean);
let stateUpTo = 0; // frames numbered up to here are the state after a fresh hello: not news
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
  if (cursor.length) url += `?after=${cursor.join(".")}`;
  const ws = new WebSocket(url);
  ws.onopen = () => {
    delay = 500;
    socketOpen = true;
    showPill();
  };
  ws.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    apply(frame);
    // After applying: a page dropped mid-frame asks for this frame again.
    if (typeof frame.key === "string" && frame.seq > stateUpTo) {
      cursor.push(frame.key);
      if (cursor.length > WINDOW) cursor.shift();
    }
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401) { // this page's sign-in ended (signed out elsewhere, a new password)
      location.assign("/signin?ended=1");
      return;
    }
    socketOpen = false;
    showPill();
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
    if (!res.ok) {
      note.textContent = `Not done: ${await res.text()}`;
      starting = null;
      showControls();
    } else note.textContent = queuedWords(await res.json());
  } catch (err) {
    note.textContent = `Not done: ${err}`;
    starting = null;
    showControls();
  }
}

$("start").addEventListener("click", () => {
  starting = currentBuild ? currentBuild.id : ""; // until its build (or a refusal) is back
  $("build-note").textContent = "";
  showControls();
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
$("gallery-more")?.addEventListener("click", moreImages);
Inbox.start();
Follows.start();
StateCards.start();

// The page as the server drew it (tiles, feed), the state it was drawn with, then live.
for (const tile of document.querySelectorAll("#gallery .tile[data-image]")) {
  tiles.set(tile.dataset.image, tile);
}
shownTiles = Math.max(GALLERY_SIZE, tiles.size);
for (const t of document.querySelectorAll("#gallery time[datetime]")) t.textContent = when(t.dateTime);
for (const frame of JSON.parse($("feed-data").textContent)) addToFeed(frame.topic, frame.activity);
for (const frame of JSON.parse($("snapshot").textContent)) apply(frame);
showControls();
connect();
