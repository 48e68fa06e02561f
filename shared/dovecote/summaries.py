"""A few words about an activity: its object summed up on one line, an id cut short.

What ``dovecote tail`` prints and what the gateway's trace index shows as each step's
summary: one wording for both, kept in the runtime so the gateway imports no tool.
"""

from __future__ import annotations

from typing import Any

# Object fields worth a glance, in this order; other short scalar fields follow.
_FIRST = ("state", "progress", "status", "points", "total", "totalItems", "mediaType")
_SKIP = {"id", "type", "name", "content", "url", "href", "@context"}


def short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis its last when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_id(value: str) -> str:
    """``urn:uuid:7757ab12-...`` -> ``7757ab12``; other ids as they are, cut short."""
    return value[9:17] if value.startswith("urn:uuid:") else short(value, 24)


def summarize(obj: Any) -> str:
    """A few words about an activity's object: type, name, then telling fields."""
    if not isinstance(obj, dict):
        return short(str(obj), 60)
    label = obj.get("name") or obj.get("content") or obj.get("id")
    words = [str(obj.get("type", "Object"))]
    if isinstance(label, str) and label == obj.get("id"):
        words.append(short_id(label))
    elif isinstance(label, str):  # a note's text is what it is about: give it more room
        words.append(repr(short(label, 40 if label == obj.get("name") else 80)))
    fields = [k for k in _FIRST if k in obj] + [k for k in obj if k not in _FIRST]
    extras = []
    for key in fields:
        value = obj[key]
        if key in _SKIP or isinstance(value, dict | list) or value is None:
            continue
        if isinstance(value, str) and (len(value) > 30 or ":" in value):
            continue  # ids, urls, timestamps: noise on one line
        if isinstance(value, bool):
            value = "true" if value else "false"
        extras.append(f"{value}%" if key == "progress" else f"{key}={value}")
        if len(extras) == 3:
            break
    return " ".join(words + extras)
