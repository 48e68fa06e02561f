"""Browser input to bus commands: a whitelist, each entry validating its own fields.

Nothing a browser sends reaches the bus except through ``parse``: an unknown command, an
unknown or mistyped field, or a body that is not a JSON object is a ``CommandError`` with a
reason, which the gateway answers with a 4xx or an error frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dovecote import activity as act
from dovecote import topics
from dovecote.topics import Topic

Builder = Callable[[Mapping[str, Any]], dict[str, Any]]


class CommandError(ValueError):
    """Browser input that is not an acceptable command; ``str()`` is the reason."""


def _fields(body: Mapping[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    extra = set(body) - set(allowed) - {"command"}
    if extra:
        raise CommandError(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    for name, kind in allowed.items():
        if name in body and not isinstance(body[name], kind):
            raise CommandError(f"{name} must be {kind.__name__}")
    return {k: body[k] for k in allowed if k in body}


def _start(body: Mapping[str, Any]) -> dict[str, Any]:
    f = _fields(body, {"shouldFail": bool})
    return {"type": "Build", "shouldFail": f.get("shouldFail", False)}


def _stop(body: Mapping[str, Any]) -> dict[str, Any]:
    f = _fields(body, {"id": str})
    obj: dict[str, Any] = {"type": "Build"}
    if "id" in f:
        obj["id"] = f["id"]
    return obj


COMMANDS: dict[str, tuple[Topic, str, Builder]] = {
    "build.start": (topics.BUILD_START, "Start", _start),
    "build.stop": (topics.BUILD_STOP, "Stop", _stop),
}


def parse(name: object, body: object, actor: Mapping[str, Any]) -> tuple[Topic, dict[str, Any]]:
    """The registry topic and the activity for one browser command."""
    if not isinstance(name, str) or name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    if not isinstance(body, Mapping):
        raise CommandError("the command must be a JSON object")
    entry, kind, build = COMMANDS[name]
    command_id = act.new_id()
    activity = act.new(kind, actor, build(body), context=command_id)
    activity["id"] = command_id
    try:
        entry.codec.decode(act.encode(activity))
    except act.InvalidActivity as exc:
        raise CommandError(str(exc)) from None
    return entry, activity
