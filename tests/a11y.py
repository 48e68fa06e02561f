"""What the browser tests check on every screen: it fits the window (no sideways scroll) and
axe-core finds nothing serious or critical; and helpers to drive a page by keyboard alone.

axe-core comes from npm, pinned by ``tests/axe/package-lock.json`` and installed by ``make
test`` (``npm ci --prefix tests/axe --ignore-scripts``), as the AsyncAPI parser is. It is
evaluated in the page through the DevTools protocol, so the page's own CSP (no inline
script) stays as it is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
INSTALL = "make test (or: npm ci --prefix tests/axe --ignore-scripts)"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 1000}
SERIOUS = ("serious", "critical")


async def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed: {INSTALL}")
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    # What is on screen once it settles: a notification fading in (opacity rising from 0)
    # fails colour contrast mid-flight, which no one ever reads.
    await page.evaluate("Promise.all(document.getAnimations().map((a) => a.finished))")
    result = await page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
        if v["impact"] in SERIOUS
    ]


async def widths(page: Any) -> tuple[int, int]:
    """(the page's width, the window's): equal when nothing scrolls sideways."""
    found: list[int] = await page.evaluate(
        "[Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),"
        " window.innerWidth]"
    )
    return found[0], found[1]


# Every box that clips or scrolls sideways and holds more than it shows, unless an ellipsis
# says so: a table whose columns are cut off in its card, reachable only by scrolling inside
# it, with nothing showing that one can.
HIDDEN_SIDEWAYS = """
[...document.querySelectorAll("body *")]
  .filter((e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .filter((e) => ["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(e).overflowX))
  .filter((e) => !e.matches("input, textarea, select"))
  .filter((e) => e.clientWidth > 1)  // for screen readers only (1 px, clipped): not shown
  // One line cut with an ellipsis says it is cut (a caption, a feed line): on purpose.
  .filter((e) => getComputedStyle(e).textOverflow !== "ellipsis")
  .map((e) => {
    const named = typeof e.className === "string" ? e.className : "";
    const classes = named.split(/\\s+/).filter(Boolean);
    const name = [e.tagName.toLowerCase(), e.id ? `#${e.id}` : "", ...classes.map((c) => `.${c}`)];
    return `${name.join("")} shows ${e.clientWidth} of ${e.scrollWidth} px`;
  })
"""


async def check_screen(page: Any, what: str) -> None:
    """The screen fits its window, nothing in it hides content sideways, and axe finds
    nothing serious on it."""
    page_width, window = await widths(page)
    assert page_width == window, f"{what}: the page is {page_width} px wide in a {window} px window"
    hidden: list[str] = await page.evaluate(HIDDEN_SIDEWAYS)
    assert hidden == [], f"{what}: content cut off sideways: {hidden}"
    found = await serious_violations(page)
    assert found == [], f"{what}: " + "\n".join(found)


async def tab_to(page: Any, selector: str, presses: int = 80) -> None:
    """Press Tab until ``selector`` has the focus, as a person without a mouse would."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    focused = await page.evaluate("document.activeElement?.outerHTML.slice(0, 120)")
    raise AssertionError(f"{presses} Tabs never reached {selector}; focus is on {focused}")
