// State cards: any service's retained state, drawn from the display hint in its topics.py
// (services/gateway/dashboard/state_cards.py). Every value is untrusted text: textContent only.
"use strict";

const StateCards = (() => {
  const cards = [];

  function escape(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // "state/badges/{user}" -> /^state\/badges\/([^/]+)$/
  function matcher(pattern) {
    const levels = pattern.split("/").map((lv) => (/^\{[a-z_]+\}$/.test(lv) ? "([^/]+)" : escape(lv)));
    return new RegExp(`^${levels.join("/")}$`);
  }

  function at(value, path) {
    if (!path) return value;
    return path.split(".").reduce((v, key) => (v == null ? undefined : v[key]), value);
  }

  function words(value) {
    if (value == null) return "";
    if (Array.isArray(value)) return value.map(words).filter(Boolean).join(", ");
    if (typeof value === "object") return String(value.name ?? value.id ?? "");
    return String(value);
  }

  function shown(value, format) {
    if (value == null || value === "") return "";
    if (format === "number" && isFinite(value)) return Number(value).toLocaleString();
    if (format === "percent" && isFinite(value)) return `${value} %`;
    if (format === "time") {
      const d = new Date(value);
      if (!isNaN(d)) return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    }
    return words(value);
  }

  function cell(tag, text, attrs = {}) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    node.textContent = text;
    return node;
  }

  // A state's value is untrusted: a link only to a web address (never javascript: or data:).
  function webAddress(value) {
    try {
      const url = new URL(String(value));
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch {
      return null;
    }
  }

  // One value in its cell: text, or a link when the field's format is "link".
  function valueCell(tag, value, format) {
    const text = shown(value, format);
    const href = format === "link" ? webAddress(value) : null;
    if (!href) return cell(tag, text);
    const node = document.createElement(tag);
    node.append(cell("a", text, { href, rel: "nofollow noopener", class: "card-link" }));
    return node;
  }

  // Rows of one card: per topic seen (its parameters first), per item of `rows` if set.
  function rowsOf(card) {
    const out = [];
    const keys = [...card.entries.keys()].sort();
    for (const key of keys) {
      const { params, activity } = card.entries.get(key);
      const items = card.spec.rows ? at(activity, card.spec.rows) : [activity];
      for (const item of Array.isArray(items) ? items : []) {
        out.push([
          ...params.map((p) => ({ value: p, format: "text" })),
          ...card.spec.fields.map((f) => ({ value: at(item, f.path), format: f.format })),
        ]);
      }
    }
    return out;
  }

  function render(card) {
    const spec = card.spec;
    const rows = rowsOf(card);
    const body = card.body;
    body.replaceChildren();
    if (!rows.length) {
      body.append(cell("p", spec.empty, { class: "empty" }));
      return;
    }
    if (!spec.params.length && !spec.rows && rows.length === 1) {
      const list = cell("dl", "", { class: "facts" });
      spec.fields.forEach((f, i) => {
        list.append(cell("dt", f.label), valueCell("dd", rows[0][i].value, f.format));
      });
      body.append(list);
      return;
    }
    const table = cell("table", "", { class: "stacked" });
    const head = document.createElement("tr");
    for (const p of spec.params) head.append(cell("th", p.label, { scope: "col" }));
    for (const f of spec.fields) head.append(cell("th", f.label, { scope: "col" }));
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const { value, format } of row) tr.append(valueCell("td", value, format));
      tbody.append(tr);
    }
    table.append(thead, tbody);
    const scroll = cell("div", "", { class: "scroll-x", tabindex: "0", role: "region", "aria-label": spec.title });
    scroll.append(table);
    body.append(scroll);
  }

  return {
    start() {
      const data = document.getElementById("cards-data");
      for (const spec of data ? JSON.parse(data.textContent) : []) {
        const section = document.querySelector(`[data-card="${CSS.escape(spec.pattern)}"]`);
        if (!section) continue;
        const body = section.querySelector(".state-card-body");
        cards.push({ spec, re: matcher(spec.pattern), entries: new Map(), body });
      }
    },
    // A state frame (its topic below the root): true when a card shows it.
    apply(topic, activity) {
      let used = false;
      for (const card of cards) {
        const found = card.re.exec(topic);
        if (!found) continue;
        const params = found.slice(1);
        card.entries.set(params.join("/"), { params, activity });
        render(card);
        used = true;
      }
      return used;
    },
  };
})();
