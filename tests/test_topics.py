"""The topic registry: addresses, filters, matching and the namespace rules."""

from __future__ import annotations

import pytest

from dovecote import activity as act
from dovecote import topics
from dovecote.topics import Topic, TopicError, check_id, matches, slug
from services.builder import topics as builder_topics


def test_address_and_filter_of_a_parameterised_topic() -> None:
    assert topics.PRESENCE.address("dovecote", service="builder", instance="2") == (
        "dovecote/services/builder/2"
    )
    assert topics.PRESENCE.filter("dovecote") == "dovecote/services/+/+"
    assert builder_topics.BUILD_STATE.filter("x") == "x/state/build"


def test_match_returns_parameters_or_none() -> None:
    assert topics.PRESENCE.match("dovecote", "dovecote/services/resizer/3") == {
        "service": "resizer",
        "instance": "3",
    }
    assert topics.PRESENCE.match("dovecote", "other/services/resizer/3") is None
    assert topics.PRESENCE.match("dovecote", "dovecote/services/resizer") is None
    assert topics.PRESENCE.match("dovecote", "dovecote/services/Bad.Id/3") is None


def test_lookup_finds_the_registry_entry() -> None:
    found = topics.lookup("r", "r/deadletter/builder")
    assert found == (topics.DEADLETTER, {"service": "builder"})
    assert topics.lookup("r", "r/nowhere") is None


@pytest.mark.parametrize(
    "bad", ["", "a/b", "a+b", "a#", "a.b", "with space", "Capital", "-lead", "x" * 65, "é"]
)
def test_unsafe_ids_are_refused_not_rewritten(bad: str) -> None:
    with pytest.raises(TopicError, match="not a valid topic id"):
        check_id(bad)
    with pytest.raises(TopicError):
        topics.PRESENCE.address("dovecote", service=bad, instance="1")


def test_slug_makes_a_valid_id() -> None:
    assert slug("Ada Lovelace!") == "ada-lovelace"
    assert check_id(slug("../../etc/passwd")) == "etc-passwd"
    with pytest.raises(TopicError):
        slug("!!!")


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/b", "a/b/c", False),
        ("#", "$SYS/broker", False),
        ("$share/g/a/+", "a/b", True),
    ],
)
def test_mqtt_filter_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "pattern", ["events/Build/x", "events/build.x", "/events/x", "events/x/", "a b", "a/{}"]
)
def test_registry_refuses_patterns_that_break_the_rules(pattern: str) -> None:
    with pytest.raises(TopicError):
        Topic(pattern, "x", 1, False, act.Activity, "bad")


def test_registry_refuses_qos_2_and_conflicting_duplicates() -> None:
    with pytest.raises(TopicError, match="QoS"):
        Topic("events/x/y", "x", 2, False, act.Activity, "qos 2 is not portable")
    with pytest.raises(TopicError, match="already registered"):
        topics.register(Topic("state/build", "someone-else", 1, True, act.Activity, "dup"))


def test_every_registered_topic_is_well_formed() -> None:
    entries = list(topics.all_topics())
    assert len(entries) >= 10
    for t in entries:
        kinds = {
            *("events", "commands", "state", "services", "deadletter", "users", "replies"),
            "metrics",
        }
        assert t.kind in kinds
        assert "." not in t.pattern
        if t.kind == "state":
            assert t.retain, f"{t.pattern}: state is retained for late joiners"
        if t.kind == "commands":
            assert t.qos == 1 and not t.retain
