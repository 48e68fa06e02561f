"""The builder as a real process on a real broker: its wiring (ticks, retained state for a
late joiner), a kill -9 and a SIGTERM mid-build, a command queued in its persistent session
while it was down, the first build of a fresh federation. Its logic (failing, refusing,
stopping, dead letters) runs on the in-memory bus: tests/test_builder_memory.py."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from dovecote import activity as act
from dovecote_testing.plugin import Probe, StartService, wait_until

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def command(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return act.new(kind, ADA, obj)


def state_is(state: str, progress: int | None = None) -> Any:
    return lambda a: (
        a["object"]["state"] == state and (progress is None or a["object"]["progress"] == progress)
    )


async def test_a_build_runs_ten_ticks_and_leaves_retained_state(
    start_service: StartService, probe: Probe
) -> None:
    start_service("builder")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    start = command("Start", {"type": "Build"})
    probe.publish("commands/builder/start", start)
    [done] = await probe.wait_for("events/build/succeeded")
    assert done["context"] == start["id"]
    ticks = [a["object"]["progress"] for a in probe.on("events/build/progress")]
    assert ticks == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    await probe.wait_for("state/builds", lambda a: a["object"]["totalItems"] == 1)
    # A late joiner gets the final state, retained, at once.
    late = await Probe(probe.conn.broker.redacted(), probe.root).start("state/build")
    [retained] = await late.wait_for("state/build", timeout=5)
    assert retained["object"]["state"] == "succeeded" and retained["object"]["progress"] == 100
    await late.stop()


async def test_killed_mid_build_the_restarted_worker_reports_the_interruption(
    start_service: StartService, probe: Probe
) -> None:
    builder = start_service("builder", BUILD_TICK_SECONDS="0.5")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    await probe.wait_for("state/build", lambda a: a["object"]["progress"] >= 20)
    builder.kill()
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Leave", timeout=60)
    start_service("builder")
    [failed] = await probe.wait_for("events/build/failed")
    assert "interrupted" in failed["summary"]
    await probe.wait_for("state/build", state_is("failed"))


async def test_sigterm_mid_build_stops_it_cleanly(
    start_service: StartService, probe: Probe
) -> None:
    builder = start_service("builder", BUILD_TICK_SECONDS="0.5")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    await probe.wait_for("events/build/progress")
    assert await asyncio.to_thread(builder.stop) == 0
    await probe.wait_for("events/build/stopped")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Leave")
    await wait_until(lambda: "stopped" in builder.log, what="log line")


async def test_a_start_queued_while_the_builder_was_down_continues_the_numbering(
    start_service: StartService, probe: Probe
) -> None:
    builder = start_service("builder", BUILD_TICK_SECONDS="0.05")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    await probe.wait_for("state/builds", lambda a: a["object"]["totalItems"] == 1)
    assert await asyncio.to_thread(builder.stop) == 0
    # Queued in the builder's persistent session; delivered before its retained history.
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    await probe.conn.flush()
    start_service("builder", BUILD_TICK_SECONDS="0.05")
    [_, second] = await probe.wait_for("events/build/started", count=2)
    assert second["object"]["name"] == "Build #2"


def published(activity: dict[str, Any]) -> float:
    return datetime.fromisoformat(activity["published"]).timestamp()


async def test_the_first_build_of_a_fresh_federation_starts_at_once(
    start_service: StartService, probe: Probe
) -> None:
    """Issue 14: with no retained history (a fresh federation) the first Start waited
    RESTORE_WAIT (2 s) for one that was never coming; the runtime now says at once that
    the retained state has all arrived."""
    start_service("builder")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    start = command("Start", {"type": "Build"})
    probe.publish("commands/builder/start", start)
    [started] = await probe.wait_for("events/build/started")
    assert started["object"]["name"] == "Build #1"
    waited = published(started) - published(start)
    print(f"the first build started {waited * 1000:.0f} ms after it was asked for")
    assert waited < 0.5, f"the first build started {waited:.2f} s after it was asked for"


async def test_a_start_queued_longer_than_the_max_age_is_refused_never_run_later(
    start_service: StartService, probe: Probe
) -> None:
    """Issue 14: a Start sent while the builder was offline started a build by itself on
    its next run, minutes later. Now it is refused with a reason, and nothing starts."""
    builder = start_service("builder", BUILD_COMMAND_MAX_AGE="1")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    assert await asyncio.to_thread(builder.stop) == 0
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Leave")
    stale = command("Start", {"type": "Build"})
    probe.publish("commands/builder/start", stale)  # queued in the builder's session
    await probe.conn.flush()
    await asyncio.sleep(1.5)  # older than BUILD_COMMAND_MAX_AGE when the builder gets it
    start_service("builder", BUILD_COMMAND_MAX_AGE="1")
    [refused] = await probe.wait_for("events/build/rejected", timeout=15)
    assert refused["object"]["id"] == stale["id"]
    assert "Start expired" in refused["summary"] and "nothing was started" in refused["summary"]
    # A fresh Start is still Build #1: the expired one never ran, now or later.
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    [started] = await probe.wait_for("events/build/started")
    assert started["object"]["name"] == "Build #1"
    assert len(probe.on("events/build/started")) == 1
