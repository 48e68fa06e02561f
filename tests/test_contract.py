"""The contract says what every field means: a subscriber written from docs/topics.md and
docs/schemas/ alone must not have to guess (who a topic's actor is, what `{user}` holds,
what `attributedTo` is). Every registered topic, the services' own included, is checked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest

from dovecote import activity as act
from dovecote import topics
from dovecote.tools import asyncapi, manifest
from services.gateway import topics as gateway_topics
from services.notifier import topics as notifier_topics

manifest.load()  # the whole registry: every service's contract


def undescribed(schema: dict[str, Any], where: str) -> Iterator[str]:
    """Every property, anywhere in one payload's schema, that has no description. A ``type``
    fixed by the schema (an enum or a constant) says itself what it is."""
    objects = [(where, schema), *((f"{where}.{n}", d) for n, d in schema.get("$defs", {}).items())]
    for name, obj in objects:
        for prop, spec in obj.get("properties", {}).items():
            fixed = prop == "type" and ("enum" in spec or "const" in spec)
            if not fixed and not spec.get("description"):
                yield f"{name}.{prop}"


@pytest.mark.parametrize("topic", list(topics.all_topics()), ids=lambda t: t.pattern)
def test_every_payload_field_says_what_it_means(topic: topics.Topic) -> None:
    missing = list(undescribed(act.json_schema(topic.payload), topic.payload.__name__))
    assert missing == [], f"add act.doc(...) to: {', '.join(missing)}"


@pytest.mark.parametrize("topic", list(topics.all_topics()), ids=lambda t: t.pattern)
def test_every_topic_says_who_its_actor_is_and_what_its_parameters_hold(
    topic: topics.Topic,
) -> None:
    assert topic.actor, f"{topic.pattern}: say who the actor is (Topic(..., actor=...))"
    for p in topic.params:
        assert topic.meaning(p), f"{topic.pattern}: say what {{{p}}} holds (meanings=...)"


class Bare(act.Model):
    type: Literal["Note"]
    said: str  # nobody said what this is


class Noted(act.Activity):
    type: Literal["Create"]
    object: Annotated[Bare, act.doc("The note.")]


def test_the_check_fails_on_a_field_without_a_description() -> None:
    assert list(undescribed(act.json_schema(Noted), "Noted")) == ["Noted.Bare.said"]


def test_the_published_documents_carry_the_meanings() -> None:
    doc = asyncapi.document()
    start = doc["channels"][asyncapi.channel_id(gateway_topics.BUILD_START)]
    assert "who pressed Start" in start["description"]
    notes = doc["channels"][asyncapi.channel_id(notifier_topics.NOTIFICATION)]
    assert "preferredUsername" in notes["parameters"]["user"]["description"]
    assert "at least once" in doc["info"]["description"]
    build = doc["components"]["schemas"]["Build"]["properties"]["attributedTo"]
    assert "who asked" in build["description"]
