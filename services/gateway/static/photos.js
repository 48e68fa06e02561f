// The gallery's pages: times in the reader's own zone, and on a photo's page the arrow keys
// go to the newer (←) and older (→) photo, as the links beside it do.
"use strict";

// A caption's time is short (the hour today, the day otherwise); a photo's page says it all.
for (const t of document.querySelectorAll("time.local")) {
  const d = new Date(t.dateTime);
  if (isNaN(d)) continue;
  const today = d.toDateString() === new Date().toDateString();
  t.textContent = !t.closest(".caption")
    ? d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
    : today
      ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false })
      : d.toLocaleDateString([], { day: "numeric", month: "short" });
}

document.addEventListener("keydown", (ev) => {
  if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  if (ev.target instanceof HTMLElement && ev.target.closest("input, textarea, select")) return;
  const link = { ArrowLeft: "newer", ArrowRight: "older" }[ev.key];
  const target = link && document.getElementById("full-size") && document.getElementById(link);
  if (target) {
    ev.preventDefault();
    target.click();
  }
});
