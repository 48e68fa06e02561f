"""``dovecote trace CONTEXT``: one piece of work across the federation, step by step.

Asks the gateway, over the bus like ``dovecote deadletter`` asks the deadletters service:
a ``View`` on ``commands/gateway/trace``, the answer on ``replies/gateway/<the command's
uuid>``, subscribed to first. The gateway answers from its bounded index of every activity
it heard with a correlation id (``services/gateway/operations/traces.py``). CONTEXT may be
the start of the id: the ``ctx 37747bd6`` that ``dovecote tail`` shows.

One line per activity, oldest first by ``published``: the time since the first step and
since the step before, the clock time, who published it, the topic, the activity:

          +0 ms      +0  22:13:08.281  gateway  events/image/created  Create Grace Hopper → Image …
          +6 ms      +6  22:13:08.287  tweeter  events/tweet/created  Create tweeter → Note …
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Any

import orjson

from dovecote import activity as act
from dovecote import topics
from dovecote.config import ConfigError, Settings
from dovecote.errors import DovecoteError
from dovecote.logs import setup_logging
from dovecote.tools import client

CLI_ACTOR = act.Actor(type="Application", id="urn:dovecote:cli:trace", name="dovecote")


class NoAnswer(DovecoteError, RuntimeError):
    """The gateway did not answer in time; ``str()`` says what to check."""


async def ask(settings: Settings, context: str, timeout: float = 10.0) -> dict[str, Any]:
    """The gateway's ``Trace`` of ``context`` (an ``act.Trace`` as JSON data)."""
    command = act.ViewTrace(
        **act.envelope(),
        type="View",
        actor=CLI_ACTOR,
        object=act.TraceQuery(type="Collection", context=context),
    )
    topics.TRACE_QUERY.codec.decode(act.encode(command))  # a bad CONTEXT fails here
    payload = await client.request(
        settings, "trace", topics.TRACE_QUERY, command, topics.TRACE_REPLY, timeout
    )
    if payload is None:
        raise NoAnswer(
            f"no answer from the gateway within {timeout:g} s: is it running? "
            "(`dovecote run` starts it; `dovecote tail services/gateway/+` shows it)"
        )
    reply = topics.TRACE_REPLY.codec.decode(payload)
    trace: dict[str, Any] = act.to_builtins(reply.object)
    return trace


def _ms(iso: Any) -> float:
    when = iso if isinstance(iso, datetime) else datetime.fromisoformat(str(iso))
    return when.timestamp() * 1000


def timeline(trace: dict[str, Any]) -> str:
    """The trace as lines a person reads."""
    steps = trace.get("orderedItems", [])
    if not steps:
        return ""
    first = previous = _ms(steps[0]["published"])
    width = max(len(s["service"]) for s in steps)
    topic_width = max(len(s["name"]) for s in steps)
    total = _ms(steps[-1]["published"]) - first
    shown = len(steps)
    count = trace["totalItems"]
    lines = [
        f"trace {trace['context']}: {count} activit{'y' if count == 1 else 'ies'}, "
        f"{total:.0f} ms from the first to the last"
        + (f" (the first {shown} listed)" if count > shown else "")
        + (" (older steps were dropped from the gateway's index)" if trace.get("partial") else "")
    ]
    for s in steps:
        at = _ms(s["published"])
        when = datetime.fromtimestamp(at / 1000).strftime("%H:%M:%S.%f")[:12]
        since_first, since_previous = f"+{at - first:.0f}", f"+{at - previous:.0f}"
        lines.append(
            f"{since_first:>8} ms {since_previous:>7}  {when}  "
            f"{s['service']:<{width}}  {s['name']:<{topic_width}}  "
            f"{s['activity']} {s['actor']} → {s['summary']}"
        )
        previous = at
    return "\n".join(lines)


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("trace", help="every activity of one correlation id, as a timeline")
    p.add_argument("context", help="a correlation id, or its start (ctx … in `dovecote tail`)")
    p.add_argument("--json", action="store_true", help="the answer as JSON")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"dovecote trace: {exc}", file=sys.stderr)
        return 2
    setup_logging("ERROR")
    try:
        trace = asyncio.run(ask(settings, args.context, args.timeout))
    except act.InvalidActivity as exc:
        print(f"dovecote trace: not a correlation id: {exc}", file=sys.stderr)
        return 2
    except (client.Unreachable, NoAnswer) as exc:
        print(f"dovecote trace: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(trace, option=orjson.OPT_INDENT_2).decode())
        return 0 if trace.get("context") else 1
    if trace.get("context") is None:
        many = trace.get("candidates", [])
        if many:
            print(f"dovecote trace: {len(many)} correlation ids start with {args.context!r}:")
            print("\n".join(f"  {c}" for c in many))
        else:
            print(
                f"dovecote trace: the gateway holds no activity with the correlation id "
                f"{args.context!r} (its index keeps the newest TRACE_INDEX_BYTES)",
                file=sys.stderr,
            )
        return 1
    print(timeline(trace))
    return 0
