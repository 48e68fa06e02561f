"""Display hints: a service's retained state, shown by the dashboard as a card. A hint whose
paths do not exist in the payload fails when the topic is registered, with the reason."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from dovecote import activity as act
from dovecote.display import Display, Field
from dovecote.topics import Topic, TopicError


class Badge(act.Model):
    type: Literal["Badge"]
    name: Annotated[act.Name, act.doc("The badge.")]
    earned: Annotated[act.Published, act.doc("When.")]


class Badges(act.Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[int, act.doc("How many.")]
    orderedItems: Annotated[list[Badge], act.doc("The badges.")]
    owner: Annotated[act.Actor, act.doc("Whose.")]


class BadgesUpdated(act.Activity):
    type: Literal["Update"]
    object: Annotated[Badges, act.doc("The badges now.")]


def topic(display: Display, pattern: str = "state/badges/{user}", retain: bool = True) -> Topic:
    return Topic(pattern, "badges", 1, retain, BadgesUpdated, "x", actor="x", display=display)


def test_a_hint_whose_paths_exist_is_accepted_and_sent_to_pages_as_json() -> None:
    shown = Display(
        "Badges",
        fields=(Field("Badge", "name"), Field("Earned", "earned", "time")),
        rows="object.orderedItems",
        columns=(("user", "Who"),),
    )
    t = topic(shown)
    assert t.display is shown
    assert shown.as_json(t.pattern, t.params) == {
        "pattern": "state/badges/{user}",
        "params": [{"name": "user", "label": "Who"}],
        "title": "Badges",
        "hint": "",
        "empty": "Nothing yet.",
        "rows": "object.orderedItems",
        "fields": [
            {"label": "Badge", "path": "name", "format": "text"},
            {"label": "Earned", "path": "earned", "format": "time"},
        ],
    }
    # Facts of the activity itself: a count, a named object (shown by its name), a time.
    topic(
        Display(
            "Badges",
            fields=(
                Field("How many", "object.totalItems", "number"),
                Field("Whose", "object.owner"),
                Field("Updated", "published", "time"),
                Field("Note", "summary"),
            ),
        )
    )


@pytest.mark.parametrize(
    ("display", "why"),
    [
        (Display("Badges", fields=(Field("N", "object.count"),)), "no field 'count'"),
        (Display("Badges", fields=(Field("N", "object.totalItems.x"),)), "inside a value"),
        (Display("Badges", fields=(Field("N", "object.owner.name", "number"),)), "a number"),
        (Display("Badges", fields=(Field("W", "summary", "time"),)), None),  # text: may be a time
        (Display("Badges", fields=(Field("W", "object.totalItems", "time"),)), "date-time"),
        (Display("Badges", fields=(Field("W", "object"),)), "not StructType"),
        (Display("Badges", fields=(Field("L", "object.totalItems", "link"),)), "a link needs"),
        (Display("Badges", fields=(Field("L", "summary", "link"),)), None),  # a string: a URL?
        (Display("Badges", fields=(Field("N", "name"),), rows="object.owner"), "not a list"),
        (Display("Badges", fields=(Field("N", "colour"),), rows="object.orderedItems"), "colour"),
        (Display("Badges", fields=(Field("N", "object.totalItems", "bold"),)), "format"),  # type: ignore[arg-type]
        (Display(" ", fields=(Field("N", "summary"),)), "a title"),
        (Display("Badges", fields=()), "at least one field"),
        (Display("B", fields=(Field("N", "summary"),), columns=(("who", "Who"),)), "parameter"),
    ],
)
def test_a_hint_that_cannot_be_shown_fails_at_registration(
    display: Display, why: str | None
) -> None:
    if why is None:
        topic(display)
        return
    with pytest.raises(TopicError, match=why):
        topic(display)


def test_only_retained_state_has_a_card() -> None:
    shown = Display("Badges", fields=(Field("N", "object.totalItems", "number"),))
    with pytest.raises(TopicError, match="only retained state"):
        topic(shown, retain=False)
    with pytest.raises(TopicError, match="only retained state"):
        topic(shown, pattern="events/badges/{user}")
