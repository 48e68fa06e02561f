// The signed-in person's inbox: the notifier keeps it, the page is rendered with it
// (templates/inbox/panel.html), live notifications are added on top. The badge is the
// unread count: the server's at render, +1 per new notification, and the notifier's own
// count when the person reads them (users/<me>/inbox, sent to every page of theirs).
// Every field is untrusted text: set with textContent only. Uses dashboard.js's helpers.
"use strict";

const Inbox = (() => {
  const SHOWN = 30;
  const shown = new Set(); // notification ids on the page: a replay may bring one again
  let unread = 0;

  function start() {
    const box = document.getElementById("inbox");
    if (!box) return;
    unread = Number(box.dataset.unread || 0);
    for (const li of box.querySelectorAll(".note-item")) shown.add(li.dataset.id);
    for (const t of box.querySelectorAll("time[datetime]")) t.textContent = time(t.dateTime);
    $("mark-read").addEventListener("click", markRead);
    show();
  }

  function show() {
    const count = $("notes-count");
    count.textContent = String(unread);
    count.hidden = unread === 0;
    $("mark-read").disabled = unread === 0;
    $("mark-read-why").hidden = unread !== 0; // a disabled control says why
    document.body.dataset.unread = String(unread);
  }

  function item(note, isUnread) {
    const about = note.object || {};
    const obj = about.object || {};
    let kind = obj.type === "Image" ? "photo" : obj.type === "Build" ? `build-${obj.state}` : "other";
    if (about.type === "Follow") kind = "follow";
    const icon = kind === "photo" ? "▣" : kind === "follow" ? "★" : "⚙";
    const li = el("li", { class: `note-item note-${kind}${isUnread ? " unread" : ""}`, "data-id": note.id || "" },
      el("span", { class: "note-icon", "aria-hidden": "true" }, icon),
      el("span", { class: "note-text" }, note.summary || `${about.type || "Something"} happened`),
      el("time", { datetime: note.published || "" }, time(note.published)),
    );
    const href = obj.type === "Image" ? localPath(obj.url) : null;
    if (href) li.append(el("a", { class: "note-link", href, target: "_blank", rel: "noopener" }, "open"));
    return li;
  }

  // A notification from the socket (live, or replayed after a reconnect).
  function add(note) {
    if (!$("inbox") || shown.has(note.id)) return;
    shown.add(note.id);
    const list = $("notifications");
    list.querySelector(".empty")?.remove();
    list.prepend(item(note, true));
    while (list.children.length > SHOWN) list.lastElementChild.remove();
    unread += 1;
    show();
  }

  // The notifier's counts after a read: the newest `unread` stay unread, the rest are read.
  function state(activity) {
    if (!$("inbox")) return;
    unread = Number(activity.object?.unread || 0);
    [...$("notifications").querySelectorAll(".note-item")].forEach((li, i) => {
      li.classList.toggle("unread", i < unread);
    });
    show();
  }

  async function markRead() {
    const newest = $("notifications").querySelector(".note-item");
    const button = $("mark-read");
    button.disabled = true;
    try {
      const res = await fetch("/api/inbox/read", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
        body: JSON.stringify(newest ? { upTo: newest.dataset.id } : {}),
      });
      if (!res.ok) throw new Error(await res.text());
    } catch (err) {
      button.disabled = false;
      $("build-note").textContent = `Not marked read: ${err.message || err}`;
    }
  }

  // After a gap the page could not replay: the inbox as the notifier has it now.
  async function reload() {
    if (!$("inbox")) return;
    try {
      const res = await fetch("/api/inbox");
      if (!res.ok) return;
      const box = await res.json();
      const list = $("notifications");
      list.replaceChildren();
      shown.clear();
      (box.orderedItems || []).forEach((note, i) => {
        shown.add(note.id);
        list.append(item(note, i < box.unread));
      });
      unread = Number(box.unread || 0);
      show();
    } catch { /* the next notification or reload brings it */ }
  }

  return { start, add, state, reload };
})();
