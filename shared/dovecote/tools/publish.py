"""``dovecote publish TOPIC [ACTIVITY | -f FILE]``: one activity onto the bus, checked first.

The topic (below the root) must be a registered, concrete topic, and the activity must
decode as the payload type the registry gives it, exactly as a subscriber would decode it.
Envelope fields left out are filled in and reported: ``@context``, a fresh ``id``,
``published`` (now) and an ``actor`` naming this command. QoS and retain come from the
registry. Nothing is sent unless every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from pathlib import Path
from typing import Any

import orjson

from dovecote import activity as act
from dovecote import topics
from dovecote.config import ConfigError, Settings
from dovecote.errors import DovecoteError
from dovecote.logs import setup_logging
from dovecote.tools import client, manifest

CLI_ACTOR = {"type": "Application", "id": "urn:dovecote:cli:publish", "name": "dovecote publish"}


class Refused(DovecoteError, ValueError):
    """The topic or the activity does not pass; ``str()`` says why."""


def fill(activity: dict[str, Any]) -> list[str]:
    """Add the envelope fields a person need not type; return which were added."""
    defaults = {
        "@context": act.AS_CONTEXT,
        "id": act.new_id(),
        "published": act.now(),
        "actor": CLI_ACTOR,
    }
    added = [k for k in defaults if k not in activity]
    for key in added:
        activity[key] = defaults[key]
    return added


def prepare(root: str, topic: str, text: str) -> tuple[topics.Topic, dict[str, Any], list[str]]:
    """The registry entry, the activity to send and the fields filled in; or ``Refused``."""
    if "+" in topic or "#" in topic:
        raise Refused(f"{topic!r} is a filter: publish to one concrete topic")
    found = topics.lookup(root, f"{root}/{topic}")
    if found is None:
        known = [t.pattern for t in topics.all_topics()]
        close = difflib.get_close_matches(topic, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise Refused(
            f"{topic!r} is not a registered topic{hint} (every topic: docs/topics.md; "
            "ids in topics are 1-64 of a-z 0-9 _ -)"
        )
    entry = found[0]
    try:
        activity = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Refused(f"the activity is not JSON: {exc}") from None
    if not isinstance(activity, dict):
        raise Refused("the activity must be a JSON object")
    added = fill(activity)
    try:
        entry.codec.decode(act.encode(activity))
    except act.InvalidActivity as exc:
        raise Refused(f"not a valid activity for {entry.pattern}: {exc}") from None
    return entry, activity, added


async def send(
    settings: Settings, topic: str, entry: topics.Topic, payload: bytes, timeout: float
) -> None:
    conn = await client.connect(settings, "publish", timeout=timeout)
    conn.publish(f"{settings.root}/{topic}", payload, entry.qos, entry.retain)
    acknowledged = await conn.flush(10)
    await conn.stop(2)
    if not acknowledged:
        raise client.Unreachable("the broker did not acknowledge the message within 10 s")


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("publish", help="validate one activity against the registry and send it")
    p.add_argument("topic", metavar="TOPIC", help="below the root, e.g. commands/builder/start")
    p.add_argument("activity", nargs="?", metavar="ACTIVITY", help="the activity as JSON")
    p.add_argument("-f", "--file", help="read the activity from this file ('-': stdin)")
    p.add_argument("--dry-run", action="store_true", help="check and print, do not send")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=command)


def _read(args: argparse.Namespace) -> str:
    if (args.activity is None) == (args.file is None):
        raise Refused("give the activity either as an argument or with -f FILE, not both")
    if args.file is None:
        return str(args.activity)
    try:
        return sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as exc:
        raise Refused(f"cannot read {args.file}: {exc.strerror}") from None


def command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        manifest.load()  # the whole registry: any service's topic
        entry, activity, added = prepare(settings.root, args.topic, _read(args))
    except (ConfigError, Refused) as exc:
        print(f"dovecote publish: {exc}", file=sys.stderr)
        return 2
    if added:
        print(f"filled in: {', '.join(added)}", file=sys.stderr)
    payload = act.encode(activity)
    if args.dry_run:
        print(payload.decode())
        return 0
    setup_logging("ERROR")
    try:
        asyncio.run(send(settings, args.topic, entry, payload, args.connect_timeout))
    except client.Unreachable as exc:
        print(f"dovecote publish: {exc}", file=sys.stderr)
        return 1
    usual = "every service" if entry.publisher == "*" else entry.publisher
    print(
        f"published {activity['type']} {activity['id']} to {settings.root}/{args.topic} "
        f"(QoS {entry.qos}, {'retained' if entry.retain else 'not retained'}; "
        f"usually published by {usual})"
    )
    return 0
