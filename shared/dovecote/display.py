"""Display hints: how the dashboard shows a service's retained state, declared with the topic.

A service that keeps state worth seeing publishes it on a retained ``state/...`` topic and
says, in its own ``topics.py``, how a page shows it::

    register(Topic("state/badges/{user}", "badges", 1, True, BadgesUpdated, "...",
                   actor="the badges service",
                   display=Display("Badges", fields=(Field("Badges", "object.names"),))))

The gateway subscribes to every state topic that has a hint and the dashboard draws one
card per hint, updated live, with no gateway or page code of the service's own. What a card
shows:

- each ``Field`` is a label and a dotted ``path`` into the activity (``object.count``,
  ``summary``, ``published``), shown as text, a number, a time or a percentage;
- ``rows``: a dotted path to a list in the activity; one row per item, the fields' paths
  then relative to the item (``object.orderedItems`` of a collection);
- a topic with parameters (``state/badges/{user}``) is one topic per value: every one
  seen makes rows of its own, with a first column per parameter.

A card with one row and no parameters is drawn as label: value pairs, any other as a table.
Every path is checked against the payload type when the topic is registered, so a typo
fails at import, not as an empty column on a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from msgspec import inspect as mi

from dovecote.errors import TopicError

Format = Literal["text", "number", "time", "percent", "link"]
FORMATS: tuple[Format, ...] = ("text", "number", "time", "percent", "link")
_SCALARS = (mi.StrType, mi.IntType, mi.FloatType, mi.BoolType, mi.DateTimeType, mi.LiteralType)
_NUMBERS = (mi.IntType, mi.FloatType)


@dataclass(frozen=True)
class Field:
    """One value a card shows: its label, where it is, how it is written."""

    label: str
    path: str  # dotted, into the activity (or into each row's item, with Display.rows)
    format: Format = "text"


@dataclass(frozen=True)
class Display:
    """How the dashboard shows one retained state topic: a card with a title."""

    title: str
    fields: tuple[Field, ...]
    rows: str | None = None  # a dotted path to a list: one row per item
    hint: str = ""  # a few words beside the title
    empty: str = "Nothing yet."  # shown while the topic has no retained message
    # What each {param} column is headed (default: the parameter's name).
    columns: tuple[tuple[str, str], ...] = field(default=())

    def check(self, payload: type[Any], params: tuple[str, ...], pattern: str) -> None:
        """Raise ``TopicError`` unless every path exists in ``payload`` and fits its format."""
        where = f"topic {pattern!r}: display"
        if not self.title.strip():
            raise TopicError(f"{where}: a card needs a title")
        if not self.fields:
            raise TopicError(f"{where}: a card needs at least one field")
        unknown = {name for name, _ in self.columns} - set(params)
        if unknown:
            raise TopicError(f"{where}: columns for no such parameter: {sorted(unknown)}")
        root = mi.type_info(payload)
        if self.rows is not None:
            listed = _resolve(root, self.rows, where)
            if isinstance(listed, mi.AnyType):
                root = listed
            elif isinstance(listed, (mi.ListType, mi.TupleType, mi.VarTupleType)):
                root = _unwrap(getattr(listed, "item_type", mi.AnyType()))
            else:
                raise TopicError(f"{where}: rows {self.rows!r} is not a list")
        for f in self.fields:
            if f.format not in FORMATS:
                raise TopicError(f"{where}: field {f.label!r}: format is one of {FORMATS}")
            _check_leaf(_resolve(root, f.path, where), f, where)

    def as_json(self, pattern: str, params: tuple[str, ...]) -> dict[str, Any]:
        """What a page gets to draw and update the card (``state_cards.js``)."""
        headings = dict(self.columns)
        return {
            "pattern": pattern,
            "params": [{"name": p, "label": headings.get(p, p)} for p in params],
            "title": self.title,
            "hint": self.hint,
            "empty": self.empty,
            "rows": self.rows,
            "fields": [{"label": f.label, "path": f.path, "format": f.format} for f in self.fields],
        }


def _unwrap(t: mi.Type) -> mi.Type:
    """A field's type without its metadata and without ``| None``."""
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType):
            kinds = [k for k in t.types if not isinstance(k, mi.NoneType)]
            if len(kinds) != 1:
                return t
            t = kinds[0]
        else:
            return t


def _resolve(t: mi.Type, path: str, where: str) -> mi.Type:
    for part in path.split("."):
        t = _unwrap(t)
        if isinstance(t, mi.AnyType):
            return t  # an open field: nothing more to check
        if not isinstance(t, mi.StructType):
            raise TopicError(f"{where}: {path!r}: {part!r} is inside a value, not an object")
        found = next((f for f in t.fields if f.encode_name == part), None)
        if found is None:
            known = ", ".join(f.encode_name for f in t.fields)
            raise TopicError(f"{where}: {path!r}: no field {part!r} (there are: {known})")
        t = found.type
    return _unwrap(t)


def _check_leaf(t: mi.Type, f: Field, where: str) -> None:
    what = f"{where}: field {f.label!r} ({f.path})"
    if isinstance(t, mi.AnyType):
        return
    if f.format in ("number", "percent") and not isinstance(t, _NUMBERS):
        raise TopicError(f"{what}: a {f.format} needs a number")
    if f.format == "time" and not isinstance(t, (mi.DateTimeType, mi.StrType)):
        raise TopicError(f"{what}: a time needs a date-time")
    if f.format == "link" and not isinstance(t, mi.StrType):
        raise TopicError(f"{what}: a link needs a string (a URL)")
    if isinstance(t, (mi.ListType, mi.VarTupleType)):
        t = _unwrap(t.item_type)  # a list of values or of named objects, joined
    if isinstance(t, (*_SCALARS, mi.AnyType)):
        return
    if isinstance(t, mi.StructType) and any(x.encode_name == "name" for x in t.fields):
        return  # an object with a name (a person, a service): its name is shown
    raise TopicError(f"{what}: shows a value or a named object, not {type(t).__name__}")


__all__ = ["Display", "Field", "Format"]
