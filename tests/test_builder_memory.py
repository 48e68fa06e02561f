"""The builder's logic through a real Worker on the in-memory bus (no broker, the fast loop):
a build that fails, one refused while another runs, a stop, the history; garbage dead
lettered. Its wiring on real brokers, as a process, is tests/test_builder_process.py."""

from __future__ import annotations

from typing import Any

from dovecote import activity as act
from dovecote_testing.plugin import MemoryBus
from services.builder.service import Builder

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def command(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return act.new(kind, ADA, obj)


def state_is(state: str, progress: int | None = None) -> Any:
    return lambda a: (
        a["object"]["state"] == state and (progress is None or a["object"]["progress"] == progress)
    )


async def test_fail_stop_and_refusal(memory_bus: MemoryBus) -> None:
    await memory_bus.start(Builder, BUILD_TICK_SECONDS="0.1")
    probe = memory_bus.probe
    probe.publish("commands/builder/start", command("Start", {"type": "Build", "shouldFail": True}))
    [failed] = await probe.wait_for("events/build/failed")
    assert failed["object"]["progress"] == 70
    await probe.wait_for("state/build", state_is("failed", 70))

    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    second = (await probe.wait_for("events/build/started", count=2))[1]["object"]["id"]
    await probe.wait_for("events/build/progress", lambda a: a["object"]["id"] == second)
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    [refused] = await probe.wait_for("events/build/rejected")
    assert "already running" in refused["summary"]
    probe.publish("commands/builder/stop", command("Stop", {"type": "Build"}))
    [stopped] = await probe.wait_for("events/build/stopped")
    assert 0 < stopped["object"]["progress"] < 100
    history = await probe.wait_for("state/builds", lambda a: a["object"]["totalItems"] == 2)
    assert [b["state"] for b in history[-1]["object"]["orderedItems"]] == ["stopped", "failed"]


async def test_garbage_is_dead_lettered_and_the_builder_keeps_working(
    memory_bus: MemoryBus,
) -> None:
    await memory_bus.start(Builder)
    probe = memory_bus.probe
    probe.publish("commands/builder/start", b"\x00\x01 not json")
    probe.publish("commands/builder/start", {"type": "Start", "object": "no actor"})
    probe.publish("commands/builder/reboot", command("Start", {"type": "Build"}))
    probe.publish("commands/builder/start", b"[" * 300_000)  # over the payload limit
    letters = await probe.wait_for("deadletter/builder", count=4)
    reasons = " | ".join(a["summary"] for a in letters)
    for why in (
        "malformed JSON",
        "not a valid StartBuild",
        "unknown command 'reboot'",
        "byte limit",
    ):
        assert why in reasons
    probe.publish("commands/builder/start", command("Start", {"type": "Build"}))
    await probe.wait_for("events/build/started")
