"""``dovecote tail [FILTER]``: watch the bus like ``mosquitto_sub -v``, decoded as AS2.

One line per message: the activity's time, its topic (below the root), type, actor, a
summary of its object and its correlation id. Each payload is checked against the type the
registry gives its topic, so a line says INVALID (and why) when a publisher broke the
contract; retained messages (state from before we subscribed) are marked ``retained``.
The retained state comes first on every broker, RabbitMQ included (``tools.retained``).
``--json`` prints one JSON object per message instead, the broker's payload bytes inside:
``{"topic", "qos", "retained", "error", "activity"}``, ready for ``jq``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from datetime import datetime
from typing import TextIO

import orjson

from dovecote import activity as act
from dovecote import capabilities, topics
from dovecote.capabilities import Capabilities
from dovecote.config import ConfigError, Settings
from dovecote.logs import setup_logging
from dovecote.mqtt import Message
from dovecote.summaries import short, short_id, summarize
from dovecote.tools import client, manifest
from dovecote.tools.retained import StateFirst

_GENERIC = act.Codec(act.Activity)
TOPIC_WIDTH = 22  # most topics fit: the columns line up


def _when(published: str | None) -> str:
    if not published:
        return datetime.now().strftime("%H:%M:%S.%f")[:12]
    try:
        t = datetime.fromisoformat(published.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return short(published, 12)
    stamp = t.strftime("%H:%M:%S.%f")[:12]
    return stamp if t.date() == datetime.now().date() else f"{t:%Y-%m-%d} {stamp}"


class Style:
    """ANSI colours when writing to a terminal (and NO_COLOR is not set)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text


PLAIN = Style(False)


def describe(msg: Message, root: str, style: Style = PLAIN) -> str:
    """The one readable line for a message."""
    topic = msg.topic.removeprefix(f"{root}/")
    marks = [style("33", "retained")] if msg.retain else []
    if not msg.payload:
        return f"{_when(None)} {topic}  (empty: a cleared retained topic)"
    found = topics.lookup(root, msg.topic)
    codec = found[0].codec if found else _GENERIC
    try:
        codec.decode(msg.payload)
    except act.InvalidActivity as exc:
        preview = short(msg.payload[:200].decode("utf-8", "replace"), 80)
        line = (
            f"{_when(None)} {topic.ljust(TOPIC_WIDTH)} {style('1;31', 'INVALID')} {exc} · {preview}"
        )
        return " ".join([line, *marks])
    a = orjson.loads(msg.payload)
    if found is None:
        marks.append(style("35", "unregistered topic"))
    actor = a["actor"].get("name") or a["actor"]["id"]
    parts = [
        style("2", _when(a.get("published"))),
        style("36", topic.ljust(TOPIC_WIDTH)),
        style("1", a["type"].ljust(6)),
        f"{actor} → {summarize(a['object'])}",
    ]
    obj = a["object"] if isinstance(a["object"], dict) else {}
    if a.get("summary") and a["summary"] not in (obj.get("content"), obj.get("name")):
        parts.append(f"“{short(a['summary'], 60)}”")
    if a.get("context"):
        parts.append(style("2", f"ctx {short_id(a['context'])}"))
    return " ".join(parts + marks)


def as_json(msg: Message, root: str) -> bytes:
    """One JSON line: the payload's own bytes when they are JSON, else the text."""
    error = None
    found = topics.lookup(root, msg.topic)
    try:
        (found[0].codec if found else _GENERIC).decode(msg.payload)
    except act.InvalidActivity as exc:
        error = str(exc)
    head = orjson.dumps(
        {"topic": msg.topic, "qos": msg.qos, "retained": msg.retain, "error": error}
    )
    try:
        orjson.loads(msg.payload)
        body = msg.payload
    except orjson.JSONDecodeError:
        body = orjson.dumps(msg.payload.decode("utf-8", "replace"))
    return head[:-1] + b',"activity":' + body + b"}"


def check_filter(topic_filter: str) -> str:
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
            "+" in level and level != "+"
        ):
            raise ValueError(
                f"bad filter {topic_filter!r}: '+' must be a whole level, '#' the last one"
            )
    return topic_filter


async def tail(
    settings: Settings,
    topic_filter: str,
    *,
    raw: bool,
    count: int,
    seconds: float,
    out: TextIO,
    connect_timeout: float = 10.0,
    declared: Capabilities | None = None,
) -> int:
    done = asyncio.Event()
    seen = 0
    style = Style(out.isatty() and not os.environ.get("NO_COLOR"))

    # Every worker's metrics report, every few seconds: shown only when asked for by name.
    absolute = f"{settings.root}/{topic_filter}"
    noisy = topics.matches(absolute, f"{settings.root}/metrics/s/i")
    reports = f"{settings.root}/metrics/" if noisy and topic_filter[:1] in "#+" else ""

    def show(msg: Message) -> None:
        nonlocal seen
        if done.is_set() or (reports and msg.topic.startswith(reports)):
            return
        try:
            if raw:
                out.write(as_json(msg, settings.root).decode() + "\n")
            else:
                out.write(describe(msg, settings.root, style) + "\n")
            out.flush()
        except BrokenPipeError:  # `dovecote tail | head`
            done.set()
            return
        seen += 1
        if count and seen >= count:
            done.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    state = StateFirst(settings.root, topic_filter, show, declared)
    conn = await client.connect(settings, "tail", state.on_message, connect_timeout)
    sub = conn.subscribe(absolute, 1)
    granted = await sub if sub is not None else [1]
    if granted[0] >= 0x80:
        await conn.stop(1)
        print(f"dovecote tail: the broker refused a subscription to {absolute}", file=sys.stderr)
        return 1
    hidden = " (metrics reports hidden: `dovecote tail 'metrics/#'` shows them)" if reports else ""
    print(
        f"watching {absolute} on {settings.broker.redacted()}{hidden} (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    gathering = loop.create_task(state.gather(conn, settings))
    finished = loop.create_task(done.wait())
    await asyncio.wait({gathering, finished}, return_when=asyncio.FIRST_COMPLETED)
    if gathering.done():
        said = gathering.result()
        if said:
            print(f"dovecote tail: {said}", file=sys.stderr, flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished, seconds or None)
    else:  # Ctrl-C (or -C N) while the state was still coming
        gathering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gathering
    finished.cancel()
    await conn.stop(1)
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tail", help="watch the bus, one decoded line per activity")
    p.add_argument("filter", nargs="?", default="#", help="below the root (default: #)")
    p.add_argument("--json", action="store_true", help="one JSON object per message, raw")
    p.add_argument("-C", "--count", type=int, default=0, help="stop after this many messages")
    p.add_argument("-W", "--seconds", type=float, default=0, help="stop after this long")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        topic_filter = check_filter(args.filter)
        declared = capabilities.declared(settings.get_str("DOVECOTE_BROKER_CAPABILITIES", ""))
    except (ConfigError, ValueError) as exc:
        print(f"dovecote tail: {exc}", file=sys.stderr)
        return 2
    setup_logging("ERROR")  # a refused login is worth a line; reconnect chatter is not
    manifest.load()  # the whole registry: every topic's payload type
    try:
        return asyncio.run(
            tail(
                settings,
                topic_filter,
                raw=args.json,
                count=args.count,
                seconds=args.seconds,
                out=sys.stdout,
                connect_timeout=args.connect_timeout,
                declared=declared,
            )
        )
    except client.Unreachable as exc:
        print(f"dovecote tail: {exc}", file=sys.stderr)
        return 1
