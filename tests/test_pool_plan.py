"""What a worker subscribes to, by broker capability: pure functions, no broker."""

from __future__ import annotations

import pytest

from dovecote.capabilities import Capabilities
from dovecote.pool import PoolError, check, covers, minimal, overlap, plan

FULL = Capabilities(shared_subscriptions=True, retained_to_wildcards=True)
RABBIT = Capabilities(shared_subscriptions=False, retained_to_wildcards=False)
POOLED = ["r/commands/builder/#", "r/commands/builder/start"]
PLAIN = ["r/commands/builder/stop", "r/state/build", "r/services/query"]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/#", "a", True),
        ("a/#", "b/#", False),
        ("a/+/c", "a/b/d", False),
        ("a/+", "a/b/c", False),
        ("+/b", "a/+", True),
        ("#", "x/y/z", True),
    ],
)
def test_overlap(a: str, b: str, expected: bool) -> None:
    assert overlap(a, b) is expected
    assert overlap(b, a) is expected


def test_covers_and_minimal() -> None:
    assert covers("a/#", "a/b/+") and covers("a/+", "a/b") and covers("#", "a")
    assert not covers("a/+", "a/#") and not covers("a/b", "a/+")
    assert minimal(["a/#", "a/b", "a/+/c", "b/c"]) == ["a/#", "b/c"]


def test_with_shared_subscriptions_pooled_filters_get_the_share_prefix() -> None:
    p = plan("builder", "2", POOLED, PLAIN, FULL)
    assert p.subscribe == [
        "$share/builder/r/commands/builder/#",
        "r/commands/builder/stop",
        "r/services/query",
        "r/state/build",
    ]
    assert not p.standby
    # A resumed session may still hold the other forms: they are unsubscribed first.
    assert "r/commands/builder/#" in p.unsubscribe
    assert "$share/builder/r/state/build" in p.unsubscribe


def test_without_shared_subscriptions_worker_1_works_alone() -> None:
    leader = plan("builder", "1", POOLED, PLAIN, RABBIT)
    assert leader.subscribe == [
        "r/commands/builder/#",
        "r/services/query",
        "r/state/build",
    ]  # stop is covered by the inbox: one copy
    assert not leader.standby
    assert "$share/builder/r/commands/builder/#" in leader.unsubscribe
    other = plan("builder", "2", POOLED, PLAIN, RABBIT)
    assert other.standby
    assert other.subscribe == ["r/commands/builder/stop", "r/services/query", "r/state/build"]
    assert "r/commands/builder/#" in other.unsubscribe  # never left behind by an old run


def test_a_pooled_handler_overlapping_a_plain_one_is_refused() -> None:
    with pytest.raises(PoolError, match="every worker would run on_any"):
        check([("r/events/#", "on_any")], [("r/events/build/+", "on_build")])
    check([("r/events/image/#", "on_image")], [("r/events/build/+", "on_build")])


def test_a_worker_alone_subscribes_plainly_even_where_share_works() -> None:
    # Mosquitto 2.0.11 restores plain subscriptions after a restart, $share ones not.
    p = plan("builder", "1", POOLED, PLAIN, FULL, alone=True)
    assert p.subscribe == ["r/commands/builder/#", "r/services/query", "r/state/build"]
    assert "$share/builder/r/commands/builder/#" in p.unsubscribe  # a pool's earlier form
    assert not p.standby
    shared = plan("builder", "1", POOLED, PLAIN, FULL)
    assert "r/commands/builder/#" in shared.unsubscribe  # and back again when it grows


def test_an_auto_id_numbered_1_leads_a_pool_where_the_broker_cannot_share() -> None:
    first = plan("builder", "web1-1", POOLED, PLAIN, RABBIT)
    second = plan("builder", "web1-2", POOLED, PLAIN, RABBIT)
    assert not first.standby and "r/commands/builder/#" in first.subscribe
    assert second.standby and "r/commands/builder/#" not in second.subscribe


def test_with_a_pool_queue_nothing_pooled_is_subscribed_over_mqtt_by_any_worker() -> None:
    for instance in ("1", "2"):
        p = plan("builder", instance, POOLED, PLAIN, RABBIT, queue=True)
        assert p.queued and not p.standby
        assert p.subscribe == ["r/commands/builder/stop", "r/services/query", "r/state/build"]
        assert "r/commands/builder/#" in p.unsubscribe  # a plain form from an older run
        assert p.pooled == ["r/commands/builder/#"]
    # Where $share works, the queue is not used.
    assert not plan("builder", "1", POOLED, PLAIN, FULL, queue=True).queued
