// On a narrow screen a table.stacked shows each row as a small card of "heading: value"
// lines (dashboard.css), so no column is cut off or hidden. Each cell gets its column's
// heading as data-label, for rows drawn now and rows drawn later (live updates).
"use strict";

(() => {
  function label(table) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const body of table.tBodies) {
      for (const row of body.rows) {
        [...row.cells].forEach((cell, i) => {
          const heading = cell.colSpan === 1 ? heads[i] : undefined;
          if (heading !== undefined && cell.dataset.label !== heading) cell.dataset.label = heading;
        });
      }
    }
  }

  const labelAll = () => document.querySelectorAll("table.stacked").forEach(label);
  // Only changes in or of a stacked table: the live feed changes the page many times a
  // second, and relabelling every table for each of those would be work for nothing.
  const stacked = (node) =>
    node.nodeType === 1 && (node.closest("table.stacked") || node.querySelector("table.stacked"));
  const touches = (r) => stacked(r.target) || [...r.addedNodes].some(stacked);
  labelAll();
  // Attribute changes are not watched, so labelling never wakes the observer again.
  new MutationObserver((records) => {
    if (records.some(touches)) labelAll();
  }).observe(document.body, { childList: true, subtree: true });
})();
