"""A page's websocket as the dashboard's script keeps it, for tests of many pages at once.

``ResumingPage`` does what dashboard.js does with its socket: it keeps the cursor (the keys
of the last frames it applied), reconnects with ``?after=`` when the socket drops, and on
``cannot-resume`` starts over from the fresh ``hello``. It records every bus frame it
applied (by key: the same on every gateway, and computable from what the broker published)
and every reload, so a test can compare a page with the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from dovecote import activity as act
from dovecote import topics
from dovecote_testing.probe import Probe
from services.gateway.bus.replay import CURSOR_KEYS, key_of
from services.gateway.service import STATE_TOPICS
from services.notifier import topics as notifier_topics


@dataclass
class ResumingPage:
    http: aiohttp.ClientSession
    urls: list[str]  # ws URLs of the gateways, tried in turn from the first (a balancer's)
    headers: dict[str, str]  # Host and Origin of PUBLIC_URL; the Cookie of a signed-in page
    user: str | None = None
    cursor: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # every bus frame applied, in order
    topics: dict[str, str] = field(default_factory=dict)  # key -> topic of those frames
    reloads: list[str] = field(default_factory=list)  # each cannot-resume's reason
    resumed: int = 0  # hellos with resumed: true
    on: str | None = None  # the URL of its current socket
    resumed_at: float | None = None  # loop time of its last resumed hello
    open: asyncio.Event = field(default_factory=asyncio.Event)
    _state_up_to: int = 0
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        turn = 0
        while True:
            url = self.urls[turn % len(self.urls)]
            query = f"?after={'.'.join(self.cursor)}" if self.cursor else ""
            try:
                async with self.http.ws_connect(url + query, headers=self.headers) as ws:
                    self.on = url
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        self._apply(orjson.loads(msg.data))
            except (aiohttp.ClientError, OSError):
                turn += 1  # that gateway is gone: the next, as a balancer would
            self.open.clear()
            self.on = None
            await asyncio.sleep(0.05)

    def _apply(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "cannot-resume":
            self.reloads.append(frame["reason"])
        elif kind == "hello":
            if frame["resumed"]:
                self.resumed += 1
                self.resumed_at = asyncio.get_running_loop().time()
            else:
                self.cursor = list(frame["after"])
            self._state_up_to = 0 if frame["resumed"] else frame["seq"]
            self.open.set()
        elif "key" in frame and frame["seq"] > self._state_up_to:
            self.keys.append(frame["key"])
            self.topics[frame["key"]] = frame["topic"]
            self.cursor.append(frame["key"])
            del self.cursor[:-CURSOR_KEYS]


PROBE = {"type": "Person", "id": "http://x/users/probe", "name": "Probe"}


def marker(probe: Probe, text: str) -> None:
    probe.publish("events/test/marker", act.new("Create", PROBE, {"type": "Note", "content": text}))


def is_marker(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: a.get("object", {}).get("content") == text


def shown_to(root: str, topic: str, user: str | None, anyone: bool = False) -> bool:
    """Whether a page of ``user`` (None: signed out; ``anyone``: any page at all) gets this
    topic's messages."""
    if topic.startswith(f"{root}/events/"):
        return True
    if any(t.match(root, topic) is not None for t in (*STATE_TOPICS, topics.PRESENCE)):
        return True
    for private in (notifier_topics.NOTIFICATION, notifier_topics.INBOX_STATE):
        params = private.match(root, topic)
        if params is not None:
            return anyone or params["user"] == user
    return False


def published_between(probe: Probe, root: str, first: str, last: str) -> list[tuple[str, str]]:
    """(topic, key) of every message for pages the broker sent from one marker to the other,
    in the order the probe heard them."""
    keyed = []
    for m in probe.messages:
        if m.payload and shown_to(root, m.topic, None, anyone=True):
            activity = orjson.loads(m.payload)
            keyed.append((m.topic, key_of(m.topic, activity["id"]), activity))
    start = next(i for i, (_, _, a) in enumerate(keyed) if is_marker(first)(a))
    end = next(i for i, (_, _, a) in enumerate(keyed) if is_marker(last)(a))
    return [(topic, key) for topic, key, _ in keyed[start : end + 1]]


def window(page: ResumingPage, sent: list[tuple[str, str]]) -> list[str]:
    """The keys of the frames a page applied from the first marker to the last."""
    start, end = sent[0][1], sent[-1][1]
    return page.keys[page.keys.index(start) : page.keys.index(end) + 1]


def compare(pages: list[ResumingPage], sent: list[tuple[str, str]], root: str) -> Counter[str]:
    """Each page's frames from the first marker to the last against what the broker sent
    that such a page may see: how many were missed and got twice, and the reloads, over all
    pages. A frame the page may not see (another person's) fails at once."""
    report: Counter[str] = Counter()
    for page in pages:
        expected = {key for topic, key in sent if shown_to(root, topic, page.user)}
        got = window(page, sent)
        report["missed"] += len(expected - set(got))
        report["twice"] += len(got) - len(set(got))
        report["reloads"] += len(page.reloads)
        extra = Counter(page.topics[key].removeprefix(root) for key in set(got) - expected)
        assert not extra, f"a page of {page.user} got frames not for it: {extra}"
    return report


async def quiet(probe: Probe, root: str, for_s: float = 1.0, within: float = 60) -> None:
    """Until the broker has sent pages nothing new for ``for_s`` seconds: a marker published
    then has nothing on either side of it in flight."""
    loop = asyncio.get_running_loop()
    until = loop.time() + within

    def count() -> int:
        return sum(1 for m in probe.messages if shown_to(root, m.topic, None, anyone=True))

    seen, since = count(), loop.time()
    while loop.time() - since < for_s:
        if loop.time() > until:
            raise AssertionError(f"the bus did not go quiet for {for_s} s within {within} s")
        await asyncio.sleep(0.1)
        if (now := count()) != seen:
            seen, since = now, loop.time()
