"""Which changes between two versions of the contract an already deployed service survives.

Both sides are AsyncAPI documents as ``dovecote.tools.asyncapi`` writes them. A change is
judged twice, because during a rolling upgrade both happen at once:

- **consumers**: a subscriber still on the old contract reads the new producers' payloads;
- **producers**: a producer not yet upgraded keeps publishing old payloads, which the
  upgraded subscribers read.

Subscribers validate strictly (msgspec: types, enums, bounds, required fields) and ignore
fields they do not know. So an optional field added is compatible both ways; a field made
required breaks producers (their payloads lack it); an enum widened breaks consumers (they
park the new value); and so on, each rule below saying why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Doc = Mapping[str, Any]

# Lower bounds tighten when they rise, upper bounds when they fall.
LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")


@dataclass(frozen=True)
class Change:
    """One difference, and whom it breaks."""

    topic: str  # the topic pattern, e.g. "events/image/created"
    where: str  # "" for the topic itself, else a path into the payload: "object.name"
    what: str
    consumers_ok: bool = True  # old subscribers accept the new payloads
    producers_ok: bool = True  # new subscribers accept the old producers' payloads

    @property
    def breaking(self) -> bool:
        return not (self.consumers_ok and self.producers_ok)

    def line(self) -> str:
        verdict = "BREAKING  " if self.breaking else "compatible"
        who = []
        if not self.consumers_ok:
            who.append("subscribers not yet upgraded refuse the new payloads")
        if not self.producers_ok:
            who.append("upgraded subscribers refuse the payloads of producers not yet upgraded")
        place = f"{self.topic} {self.where}".rstrip()
        return f"{verdict} {place}: {self.what}" + (f" ({'; '.join(who)})" if who else "")


def compare(old: Doc, new: Doc) -> list[Change]:
    """Every change from ``old`` to ``new``, topic by topic, breaking ones first."""
    changes = list(_topics(old, new))
    return sorted(changes, key=lambda c: (not c.breaking, c.topic, c.where))


def _by_topic(doc: Doc) -> dict[str, tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """pattern -> (its channel, its send operation)."""
    sends = {
        op["channel"]["$ref"].rsplit("/", 1)[-1]: op
        for op in doc.get("operations", {}).values()
        if op.get("action") == "send"
    }
    return {
        channel["title"]: (channel, sends.get(cid))
        for cid, channel in doc.get("channels", {}).items()
    }


def _topics(old: Doc, new: Doc) -> Iterator[Change]:
    before, after = _by_topic(old), _by_topic(new)
    for pattern in sorted(before.keys() - after.keys()):
        yield Change(
            pattern,
            "",
            "topic removed: its subscribers wait for messages that no longer come",
            consumers_ok=False,
        )
    for pattern in sorted(after.keys() - before.keys()):
        yield Change(pattern, "", "topic added")
    for pattern in sorted(before.keys() & after.keys()):
        (old_channel, old_send), (new_channel, new_send) = before[pattern], after[pattern]
        yield from _delivery(pattern, old_send or {}, new_send or {})
        old_ref, new_ref = _message_schema(old, old_channel), _message_schema(new, new_channel)
        if old_ref.rsplit("/", 1)[-1] != new_ref.rsplit("/", 1)[-1]:
            yield Change(
                pattern,
                "",
                f"payload type renamed {old_ref.rsplit('/', 1)[-1]} -> "
                f"{new_ref.rsplit('/', 1)[-1]} (judged by shape below)",
            )
        walk = _Walk(old, new, pattern)
        yield from walk.schemas({"$ref": old_ref}, {"$ref": new_ref}, "")


def _delivery(pattern: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    old_tags = [t["name"] for t in old.get("tags", [])]
    new_tags = [t["name"] for t in new.get("tags", [])]
    if old_tags != new_tags:
        yield Change(
            pattern,
            "",
            f"publisher {', '.join(old_tags)} -> {', '.join(new_tags)}: the broker's roles "
            "must allow the new publisher before it is deployed",
            producers_ok=False,
        )
    old_mqtt = old.get("bindings", {}).get("mqtt", {})
    new_mqtt = new.get("bindings", {}).get("mqtt", {})
    qos_before, qos_after = old_mqtt.get("qos", 0), new_mqtt.get("qos", 0)
    if qos_after < qos_before:
        yield Change(
            pattern,
            "",
            f"QoS {qos_before} -> {qos_after}: subscribers relying on at-least-once may now "
            "miss messages",
            consumers_ok=False,
        )
    elif qos_after > qos_before:
        yield Change(pattern, "", f"QoS {qos_before} -> {qos_after}")
    retain_before, retain_after = old_mqtt.get("retain", False), new_mqtt.get("retain", False)
    if retain_before != retain_after:
        yield Change(
            pattern,
            "",
            "no longer retained: a subscriber that joins later gets no state"
            if retain_before
            else "now retained: a subscriber that joins gets the last message again at once",
            consumers_ok=False,
        )


def _message_schema(doc: Doc, channel: Mapping[str, Any]) -> str:
    """The ``#/components/schemas/X`` reference of a channel's (only) message."""
    [message] = channel["messages"].values()
    found = _resolve(doc, message["$ref"])
    if "$ref" in found:  # a channel's message points at a component message
        found = _resolve(doc, found["$ref"])
    ref: str = found["payload"]["$ref"]
    return ref


def _resolve(doc: Doc, ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None  # any type
    return {kind} if isinstance(kind, str) else set(kind)


def _key(schema: Mapping[str, Any]) -> str:
    """Which alternative of a union this is, to pair it with its counterpart."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    types = _types(schema)
    return "|".join(sorted(types)) if types is not None else json.dumps(schema, sort_keys=True)


class _Walk:
    """Compares two payload schemas of one topic, following references on both sides."""

    def __init__(self, old: Doc, new: Doc, topic: str) -> None:
        self.old, self.new, self.topic = old, new, topic
        self.seen: set[tuple[str, str, str]] = set()

    def change(
        self, where: str, what: str, consumers: bool = True, producers: bool = True
    ) -> Change:
        return Change(self.topic, where, what, consumers, producers)

    def schemas(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str
    ) -> Iterator[Change]:
        if "$ref" in old or "$ref" in new:
            pair = (str(old.get("$ref", "")), str(new.get("$ref", "")), where)
            if pair in self.seen:
                return  # a recursive type: this pair is being compared already
            self.seen.add(pair)
            if "$ref" in old:
                old = _resolve(self.old, old["$ref"])
            if "$ref" in new:
                new = _resolve(self.new, new["$ref"])
        old_alts = old.get("anyOf") or old.get("oneOf") or [old]
        new_alts = new.get("anyOf") or new.get("oneOf") or [new]
        if len(old_alts) == 1 and len(new_alts) == 1:
            yield from self.single(old_alts[0], new_alts[0], where)
            return
        before = {_key(a): a for a in old_alts}
        after = {_key(a): a for a in new_alts}
        for gone in sorted(before.keys() - after.keys()):
            yield self.change(where, f"may no longer be {gone}", producers=False)
        for added in sorted(after.keys() - before.keys()):
            yield self.change(where, f"may now be {added}", consumers=False)
        for both in sorted(before.keys() & after.keys()):
            yield from self.schemas(before[both], after[both], where)

    def single(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str
    ) -> Iterator[Change]:
        if "$ref" in old or "$ref" in new or "anyOf" in old or "anyOf" in new:
            yield from self.schemas(old, new, where)
            return
        old_types, new_types = _types(old), _types(new)
        if old_types != new_types:
            yield self.change(
                where,
                f"type {_words(old_types)} -> {_words(new_types)}",
                consumers=_within(new_types, old_types),
                producers=_within(old_types, new_types),
            )
            if (
                old_types
                and new_types
                and not (_within(old_types, new_types) or _within(new_types, old_types))
                and not old_types & new_types
            ):
                return  # nothing in common: the details below would only repeat it
        yield from self.values(old, new, where)
        yield from self.bounds(old, new, where)
        for word in ("pattern", "format"):
            if old.get(word) != new.get(word):
                yield self.change(
                    where,
                    f"{word} {old.get(word)!r} -> {new.get(word)!r}",
                    consumers=word not in old,  # a rule dropped: old subscribers still apply it
                    producers=word not in new,  # a rule added: old producers never heard of it
                )
        if "properties" in old or "properties" in new:
            yield from self.objects(old, new, where)
        extra_old, extra_new = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(extra_old, dict) and isinstance(extra_new, dict):
            yield from self.schemas(extra_old, extra_new, f"{where}{{*}}".lstrip("."))
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            yield from self.schemas(old["items"], new["items"], f"{where}[]")

    def values(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str
    ) -> Iterator[Change]:
        before = _allowed(old)
        after = _allowed(new)
        if before == after:
            return
        if before is not None and after is not None:
            gone, added = before - after, after - before
            if gone:
                yield self.change(where, f"no longer allows {_listed(gone)}", producers=False)
            if added:
                yield self.change(where, f"now allows {_listed(added)}", consumers=False)
        elif before is None:
            yield self.change(where, f"now only {_listed(after or set())}", producers=False)
        else:
            yield self.change(where, f"no longer only {_listed(before)}", consumers=False)

    def bounds(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str
    ) -> Iterator[Change]:
        for word in (*LOWER, *UPPER):
            lower = word in LOWER
            missing = -math.inf if lower else math.inf
            before, after = old.get(word, missing), new.get(word, missing)
            if before == after:
                continue
            tighter = after > before if lower else after < before
            yield self.change(
                where,
                f"{word} {_bound(before)} -> {_bound(after)}",
                consumers=tighter,
                producers=not tighter,
            )

    def objects(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str
    ) -> Iterator[Change]:
        before, after = old.get("properties", {}), new.get("properties", {})
        required_before = set(old.get("required", []))
        required_after = set(new.get("required", []))
        closed_before = old.get("additionalProperties") is False
        closed_after = new.get("additionalProperties") is False
        for name in sorted(before.keys() | after.keys()):
            at = f"{where}.{name}".lstrip(".")
            if name not in after:
                was_required = name in required_before
                yield self.change(
                    at,
                    "field removed" + (" (it was required)" if was_required else ""),
                    consumers=not was_required,
                    producers=not closed_after,
                )
            elif name not in before:
                required = name in required_after
                yield self.change(
                    at,
                    ("required" if required else "optional") + " field added",
                    consumers=not closed_before,
                    producers=not required,
                )
            else:
                if name in required_before and name not in required_after:
                    yield self.change(at, "no longer required", consumers=False)
                elif name in required_after and name not in required_before:
                    yield self.change(at, "now required", producers=False)
                yield from self.schemas(before[name], after[name], at)
        if closed_before != closed_after:
            yield self.change(
                where,
                "unknown fields now refused" if closed_after else "unknown fields now allowed",
                producers=not closed_after,
            )


def _allowed(schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON values an ``enum`` or ``const`` allows (canonical JSON), or None: any."""
    if "const" in schema:
        return {json.dumps(schema["const"], sort_keys=True)}
    if "enum" in schema:
        return {json.dumps(v, sort_keys=True) for v in schema["enum"]}
    return None


def _within(inner: set[str] | None, outer: set[str] | None) -> bool:
    """Every value of types ``inner`` is one of types ``outer`` (None: any type)."""
    if outer is None:
        return True
    if inner is None:
        return False
    return all(t in outer or (t == "integer" and "number" in outer) for t in inner)


def _listed(values: set[str]) -> str:
    return ", ".join(sorted(values))


def _words(types: set[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))


def _bound(value: float) -> str:
    return "none" if math.isinf(value) else f"{value:g}"
