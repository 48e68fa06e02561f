"""``dovecote deadletter list|replay``: what the services could not process, and a second try.

Both ask the deadletters service (``services/deadletters``), which keeps every letter in
its store, over the bus: the command goes to ``commands/deadletters/<verb>`` and the answer
comes back on ``replies/deadletters/<the command's uuid>``, subscribed to first. No answer
in time means the service is not running (``dovecote run`` starts it).

``replay`` sends letters back to the service that parked each one, which handles the
original payload again as if it had just arrived on its original topic.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from dovecote import activity as act
from dovecote import topics
from dovecote.config import ConfigError, Settings
from dovecote.errors import DovecoteError
from dovecote.logs import setup_logging
from dovecote.tools import client
from dovecote.topics import P

CLI_ACTOR = act.Actor(type="Application", id="urn:dovecote:cli:deadletter", name="dovecote")


class NoAnswer(DovecoteError, RuntimeError):
    """The deadletters service did not answer in time; ``str()`` says what to check."""


async def ask(
    settings: Settings, entry: topics.Topic[P], command: P, timeout: float = 10.0
) -> dict[str, Any]:
    """Send one command to the deadletters service and return its answer (an activity)."""
    entry.codec.decode(act.encode(command))  # a bug here must fail here, not at the service
    payload = await client.request(
        settings, "deadletter", entry, command, topics.DEADLETTER_REPLY, timeout
    )
    if payload is None:
        raise NoAnswer(
            f"no answer from the deadletters service within {timeout:g} s: is it running? "
            "(`dovecote run` starts it; `dovecote tail services/deadletters/+` shows it)"
        )
    reply: dict[str, Any] = orjson.loads(payload)
    topics.DEADLETTER_REPLY.codec.decode(payload)
    return reply


def table(report: dict[str, Any]) -> str:
    rows = report.get("orderedItems", [])
    lines = []
    for r in rows:
        replayed = f", replayed {r['replays']}×" if r.get("replays") else ""
        lines.append(
            f"{r['id']}  {r['published'][:19]}  {r['service']:<12} {r['topic']}\n"
            f"    {r['attempts']} attempt(s), {r['size']} bytes{replayed}: {r['summary']}"
        )
    shown = len(rows)
    total = int(report.get("totalItems", shown))
    lines.append(f"{shown} of {total} letter(s)" if total > shown else f"{shown} letter(s)")
    return "\n".join(lines)


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deadletter", help="list and replay what services could not process")
    verbs = p.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="the dead letters held, newest first")
    ls.add_argument("--service", help="only this service's letters")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    ls.add_argument("--json", action="store_true", help="the answer as JSON")
    rp = verbs.add_parser("replay", help="send letters back to the services that parked them")
    rp.add_argument("ids", nargs="*", metavar="ID", help="letter ids (from `list`)")
    rp.add_argument("--all", action="store_true", help="every letter not replayed yet")
    rp.add_argument("--service", help="with --all: only this service's letters")
    rp.add_argument("--json", action="store_true", help="the answer as JSON")
    for q in (ls, rp):
        q.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    name = f"dovecote deadletter {args.verb}"
    try:
        settings = Settings.from_env()
        entry, request = _request(args)
    except (ConfigError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    setup_logging("ERROR")
    try:
        reply = asyncio.run(ask(settings, entry, request, args.timeout))
    except (client.Unreachable, NoAnswer) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    report = reply["object"]
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        if args.verb == "replay":
            print(f"replayed {len(report.get('orderedItems', []))} letter(s):")
        print(table(report))
        for missing in report.get("missing", []):
            print(f"not held (unknown id): {missing}", file=sys.stderr)
    return 1 if report.get("missing") else 0


def _request(args: argparse.Namespace) -> tuple[topics.Topic, act.Activity]:
    if args.service is not None:
        topics.check_id(args.service, "service")
    envelope = act.envelope()
    context = envelope["id"]  # follows the replays through every service's log
    if args.verb == "list":
        if not 1 <= args.limit <= 1000:
            raise ValueError("--limit must be 1-1000")
        query = act.LetterQuery(type="Collection", service=args.service or None, limit=args.limit)
        return topics.DEADLETTER_LIST, act.ListDeadLetters(
            **envelope, type="View", actor=CLI_ACTOR, object=query, context=context
        )
    if bool(args.ids) == bool(args.all):
        raise ValueError("give letter ids, or --all (not both)")
    if args.service and not args.all:
        raise ValueError("--service goes with --all")
    selection = act.LetterSelection(
        type="Collection", items=args.ids, all=args.all, service=args.service or None
    )
    return topics.DEADLETTER_REPLAY, act.ReplayDeadLetters(
        **envelope, type="Undo", actor=CLI_ACTOR, object=selection, context=context
    )
