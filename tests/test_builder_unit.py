"""The builder's pure functions and handlers, called directly (no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from msgspec.structs import replace

from dovecote import activity as act
from dovecote.config import Settings
from dovecote.service import Bus, Delivery
from services.builder import build as b
from services.builder import service as builder_service
from services.builder import topics as builder_topics
from services.builder.service import Builder
from services.gateway import topics as gateway_topics

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}
ADA_ACTOR = act.Actor(type="Person", id=ADA["id"], name="Ada")


def test_a_build_takes_ten_ticks_of_ten_percent() -> None:
    build = b.new_build(1, False, ADA_ACTOR, "builder.1")
    seen = []
    while build.state == "running":
        build = b.advanced(build)
        seen.append(build.progress)
    assert seen == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert build.state == "succeeded" and build.endTime


def test_a_build_asked_to_fail_fails_at_seventy() -> None:
    build = b.new_build(1, True, ADA_ACTOR, "builder.1")
    while build.state == "running":
        build = b.advanced(build)
    assert (build.state, build.progress) == ("failed", 70)


def test_history_is_newest_first_unique_and_bounded() -> None:
    history: list[builder_topics.Build] = []
    builds = [b.new_build(i, False, ADA_ACTOR, "w") for i in range(30)]
    for x in builds:
        history = b.with_history(history, x)
    history = b.with_history(history, b.finished(builds[-1], "succeeded"))
    assert len(history) == b.HISTORY_SIZE
    assert history[0].id == builds[-1].id and history[0].state == "succeeded"
    assert len({h.id for h in history}) == len(history)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], int, bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.sent.append((topic, orjson.loads(payload), qos, retain))

    def topics(self) -> list[str]:
        return [t.split("/", 1)[1] for t, *_ in self.sent]


def make_builder(tick: str = "0") -> tuple[Builder, Recorder]:
    settings = Settings.from_env({"BUILD_TICK_SECONDS": tick})
    rec = Recorder()
    builder = Builder(Bus(rec, "builder", settings), settings)
    builder.restored.set()  # as if the retained history had arrived
    return builder, rec


def start_command(fail: bool = False) -> tuple[gateway_topics.StartBuild, Delivery]:
    a = act.new("Start", ADA, {"type": "Build", "shouldFail": fail}, context="urn:uuid:c1")
    return gateway_topics.BUILD_START.codec.decode(act.encode(a)), Delivery.of(
        "dovecote", gateway_topics.BUILD_START, a
    )


async def test_start_runs_a_build_to_success_publishing_events_and_state() -> None:
    builder, rec = make_builder()
    await builder.on_start(*start_command())
    assert builder.task is not None
    await builder.task
    names = rec.topics()
    assert names[:2] == ["events/build/started", "state/build"]
    assert names.count("events/build/progress") == 9
    assert names[-3:] == ["events/build/succeeded", "state/build", "state/builds"]
    retained = {t for t, _, _, r in rec.sent if r}
    assert retained == {"dovecote/state/build", "dovecote/state/builds"}
    qos0 = {t for t, _, q, _ in rec.sent if q == 0}
    assert qos0 == {"dovecote/events/build/progress"}
    contexts = {p.get("context") for t, p, _, _ in rec.sent if "/events/" in t}
    assert contexts == {"urn:uuid:c1"}, "the command's correlation id follows the build"


async def test_a_second_start_while_running_is_rejected_with_a_reason() -> None:
    builder, rec = make_builder(tick="5")
    await builder.on_start(*start_command())
    await builder.on_start(*start_command())
    rejected = [p for t, p, _, _ in rec.sent if t.endswith("events/build/rejected")]
    assert len(rejected) == 1 and "already running" in rejected[0]["summary"]
    await builder.teardown()


async def test_stop_mid_build_publishes_stopped() -> None:
    builder, rec = make_builder(tick="0.05")
    await builder.on_start(*start_command())
    await asyncio.sleep(0.12)
    stop = act.new("Stop", ADA, {"type": "Build"})
    await builder.on_stop(
        gateway_topics.BUILD_STOP.codec.decode(act.encode(stop)),
        Delivery.of("dovecote", gateway_topics.BUILD_STOP, stop),
    )
    final = [p for t, p, _, _ in rec.sent if t.endswith("events/build/stopped")]
    assert len(final) == 1 and 0 < final[0]["object"]["progress"] < 100
    assert builder.task is None


def own_state(
    builder: Builder, state: builder_topics.Build, retained: bool
) -> tuple[Any, Delivery]:
    update = act.new("Update", act.service("builder"), state)
    return (
        builder_topics.BUILD_STATE.codec.decode(act.encode(update)),
        Delivery.of("dovecote", builder_topics.BUILD_STATE, update, retained=retained),
    )


@pytest.mark.parametrize("retained", [True, False], ids=["retained", "left-queued"])
async def test_a_running_state_of_this_worker_from_before_means_it_was_interrupted(
    retained: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builder_service, "RESTORE_WAIT", 0.05)
    builder, rec = make_builder()
    await builder.setup()
    stale = replace(b.new_build(7, False, ADA_ACTOR, "builder.1"), progress=40)
    await builder.on_state(*own_state(builder, stale, retained))
    await asyncio.sleep(0.2)  # the restore settles
    failed = [p for t, p, _, _ in rec.sent if t.endswith("events/build/failed")]
    assert len(failed) == 1 and "interrupted" in failed[0]["summary"]
    assert failed[0]["object"]["progress"] == 40
    await builder.teardown()


async def test_a_build_that_finished_before_the_crash_is_not_called_interrupted() -> None:
    builder, rec = make_builder()
    build = b.new_build(7, False, ADA_ACTOR, "builder.1")
    # The dead process's last copies, left queued in order: running, then its success.
    await builder.on_state(*own_state(builder, replace(build, progress=90), retained=False))
    await builder.on_state(*own_state(builder, b.finished(build, "succeeded"), retained=False))
    builder._report_orphan()  # what the settling does
    assert not [t for t, _, _, _ in rec.sent if t.endswith("events/build/failed")]


async def test_a_start_older_than_the_max_age_is_refused_with_a_reason_and_never_run() -> None:
    builder, rec = make_builder()
    old = act.new("Start", ADA, {"type": "Build"}, context="urn:uuid:c1")
    old["published"] = "2020-01-01T10:00:00.000Z"  # long before "now": queued while offline
    await builder.on_start(
        gateway_topics.BUILD_START.codec.decode(act.encode(old)),
        Delivery.of("dovecote", gateway_topics.BUILD_START, old),
    )
    assert builder.task is None and builder.current is None
    [(topic, refused, _, _)] = rec.sent
    assert topic == "dovecote/events/build/rejected"
    assert refused["object"]["id"] == old["id"]
    assert refused["summary"].startswith("Ada's Start expired: it was sent ")
    assert "(the builder was offline)" in refused["summary"]  # not connected: its link down
    assert "nothing was started" in refused["summary"]
    # A fresh one runs, and numbering goes on as if the expired one never was.
    await builder.on_start(*start_command())
    assert builder.current is not None and builder.current.name == "Build #1"
    await builder.teardown()


async def test_a_start_that_came_late_while_the_builder_was_online_names_its_gateway() -> None:
    """Issue 22: a Start that waited in a cut-off gateway's outbox was refused as if the
    builder had been offline. Online since before it was sent, the builder knows better."""
    builder, rec = make_builder()
    builder.bus.link.went_up()  # the builder's connection, up since now
    late = act.new("Start", ADA, {"type": "Build"}, context="urn:uuid:c2")
    late["published"] = act.to_json(act.instant())  # sent now...
    await asyncio.sleep(1.1)  # ... and here only after BUILD_COMMAND_MAX_AGE (1 s below)
    builder.max_age = 1.0
    online_since = builder.bus.link.up_since
    assert online_since is not None
    await builder.on_start(
        gateway_topics.BUILD_START.codec.decode(act.encode(late)),
        Delivery.of("dovecote", gateway_topics.BUILD_START, late),
    )
    [(_, refused, _, _)] = rec.sent
    summary = refused["summary"]
    assert summary.startswith("Ada's Start expired: it was sent "), summary
    assert summary.endswith(
        " s ago (the builder was online; the gateway that accepted it could not reach the "
        "bus and kept it until it could), more than BUILD_COMMAND_MAX_AGE allows; nothing "
        "was started. Press Start again."
    ), summary
    # Connected only after it was sent: the builder was offline (for part of that time).
    builder.bus.link.went_down()
    builder.bus.link.went_up()
    assert "(the builder was offline)" in builder_service.expired_why(
        gateway_topics.BUILD_START.codec.decode(act.encode(late)), 12.0, builder.bus.link.up_since
    )


async def test_a_stopped_build_says_who_stopped_it_and_a_failed_one_why() -> None:
    builder, rec = make_builder(tick="0.05")
    await builder.on_start(*start_command())
    await asyncio.sleep(0.12)
    grace = {"type": "Person", "id": "http://localhost:8080/users/grace", "name": "Grace"}
    stop = act.new("Stop", grace, {"type": "Build"})
    await builder.on_stop(
        gateway_topics.BUILD_STOP.codec.decode(act.encode(stop)),
        Delivery.of("dovecote", gateway_topics.BUILD_STOP, stop),
    )
    [stopped] = [p for t, p, _, _ in rec.sent if t.endswith("events/build/stopped")]
    build = stopped["object"]
    assert build["stoppedBy"] == grace
    assert build["summary"] == f"stopped by Grace at {build['progress']} %"
    assert stopped["summary"] == build["summary"]
    [history] = [p for t, p, _, _ in rec.sent if t.endswith("state/builds")]
    assert history["object"]["orderedItems"][0]["stoppedBy"] == grace

    await builder.on_start(*start_command(fail=True))
    assert builder.task is not None
    await builder.task
    [failed] = [p for t, p, _, _ in rec.sent if t.endswith("events/build/failed")]
    assert failed["object"]["summary"] == "failed at 70 %, as asked when it was started"
    assert "stoppedBy" not in failed["object"]


async def test_a_build_stopped_by_a_shutdown_says_so() -> None:
    builder, rec = make_builder(tick="5")
    await builder.on_start(*start_command())
    await builder.teardown()
    [stopped] = [p for t, p, _, _ in rec.sent if t.endswith("events/build/stopped")]
    assert stopped["object"]["summary"] == "stopped at 0 %: the builder was shut down"


async def test_the_runtime_saying_retained_state_arrived_ends_the_wait_at_once() -> None:
    settings = Settings.from_env({"BUILD_TICK_SECONDS": "5"})
    rec = Recorder()
    builder = Builder(Bus(rec, "builder", settings), settings)  # nothing restored yet
    await builder.setup()
    stale = replace(b.new_build(7, False, ADA_ACTOR, "builder.1"), progress=40)
    await builder.on_state(*own_state(builder, stale, retained=True))
    loop = asyncio.get_running_loop()
    began = loop.time()
    waiting = loop.create_task(builder.on_start(*start_command()))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # it waits for the history ...
    await builder.retained_arrived()  # ... until the runtime says it has all arrived
    await waiting
    assert loop.time() - began < 0.5  # not RESTORE_WAIT
    names = [t.split("/", 1)[1] for t, *_ in rec.sent]
    assert names[:2] == ["events/build/failed", "state/build"]  # the orphan, reported first
    assert "events/build/started" in names
    await builder.teardown()
