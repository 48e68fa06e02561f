// Follow and unfollow from the people card (social/follows.py): PUT or DELETE /api/following/<id>.
// Another page of the same person following someone shows here too (events/people/*).
"use strict";

const Follows = (() => {
  function start() {
    for (const button of document.querySelectorAll("button[data-follow]")) {
      button.addEventListener("click", () => toggle(button));
    }
  }

  function set(button, following) {
    button.setAttribute("aria-pressed", following ? "true" : "false");
    button.textContent = following ? "Following" : "Follow";
    button.classList.toggle("following", following);
  }

  async function toggle(button) {
    const following = button.getAttribute("aria-pressed") === "true";
    button.disabled = true;
    try {
      const res = await fetch(`/api/following/${encodeURIComponent(button.dataset.follow)}`, {
        method: following ? "DELETE" : "PUT",
        headers: { "X-CSRF-Token": CSRF },
      });
      if (!res.ok) throw new Error(await res.text());
      set(button, (await res.json()).following);
    } catch (err) {
      button.title = `Not changed: ${err.message || err}`;
    } finally {
      button.disabled = false;
    }
  }

  // A follow published on the bus: if it is mine (another tab), show it here too.
  function seen(activity, following) {
    if (!ME || activity.actor?.preferredUsername !== ME) return;
    const other = following ? activity.object : activity.object?.object;
    const id = other?.preferredUsername;
    if (!id) return;
    const button = document.querySelector(`button[data-follow="${CSS.escape(id)}"]`);
    if (button) set(button, following);
  }

  return { start, seen };
})();
