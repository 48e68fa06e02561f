"""Pure functions of a build: no bus, no clock of their own."""

from __future__ import annotations

from typing import Any

from dovecote import activity as act

STEPS = 10  # the seed: 10 ticks of 10 %
FAIL_AT = 70  # a build asked to fail turns red here, as in the seed
HISTORY_SIZE = 20
ASKED_TO_FAIL = f"failed at {FAIL_AT} %: it was asked to (fail at {FAIL_AT}%)"


def new_build(
    number: int, should_fail: bool, requested_by: dict[str, Any], worker: str
) -> dict[str, Any]:
    return {
        "type": "Build",
        "id": act.new_id(),
        "name": f"Build #{number}",
        "state": "running",
        "progress": 0,
        "shouldFail": should_fail,
        "startTime": act.now(),
        "attributedTo": requested_by,
        "worker": worker,
    }


def advanced(build: dict[str, Any]) -> dict[str, Any]:
    """The build one tick later: 10 % more, failed at 70 % if asked, succeeded at 100 %."""
    progress = min(100, build["progress"] + 100 // STEPS)
    if build["shouldFail"] and progress >= FAIL_AT:
        return finished(build, "failed", FAIL_AT, ASKED_TO_FAIL)
    if progress == 100:
        return finished(build, "succeeded", 100)
    return {**build, "progress": progress}


def finished(
    build: dict[str, Any], state: str, progress: int | None = None, why: str | None = None
) -> dict[str, Any]:
    """The build ended: ``why`` is the reason a page shows (failed, stopped: by whom)."""
    done = {
        **build,
        "state": state,
        "progress": build["progress"] if progress is None else progress,
        "endTime": act.now(),
    }
    if why:
        done["summary"] = why
    return done


def stopped_why(build: dict[str, Any], by: dict[str, Any] | None) -> str:
    """Who stopped it, and where: a person's Stop, or the builder shutting down."""
    if by is None:
        return f"stopped at {build['progress']} %: the builder was shut down"
    return f"stopped by {by.get('name') or by['id']} at {build['progress']} %"


def with_history(history: list[dict[str, Any]], build: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest first, one entry per build id, bounded."""
    rest = [b for b in history if b["id"] != build["id"]]
    return [build, *rest][:HISTORY_SIZE]
