"""Pure functions of a build: no bus, no clock of their own."""

from __future__ import annotations

from msgspec.structs import replace

from dovecote import activity as act
from services.builder import topics as builder_topics

STEPS = 10  # the seed: 10 ticks of 10 %
FAIL_AT = 70  # a build asked to fail turns red here, as in the seed
HISTORY_SIZE = 20
ASKED_TO_FAIL = f"failed at {FAIL_AT} %, as asked when it was started"


def new_build(
    number: int, should_fail: bool, requested_by: act.Actor, worker: str
) -> builder_topics.Build:
    return builder_topics.Build(
        type="Build",
        id=act.new_id(),
        name=f"Build #{number}",
        state="running",
        progress=0,
        shouldFail=should_fail,
        startTime=act.instant(),
        attributedTo=requested_by,
        worker=worker,
    )


def advanced(build: builder_topics.Build) -> builder_topics.Build:
    """The build one tick later: 10 % more, failed at 70 % if asked, succeeded at 100 %."""
    progress = min(100, build.progress + 100 // STEPS)
    if build.shouldFail and progress >= FAIL_AT:
        return finished(build, "failed", FAIL_AT, ASKED_TO_FAIL)
    if progress == 100:
        return finished(build, "succeeded", 100)
    return replace(build, progress=progress)


def finished(
    build: builder_topics.Build,
    state: builder_topics.BuildState,
    progress: int | None = None,
    why: str | None = None,
) -> builder_topics.Build:
    """The build ended: ``why`` is the reason a page shows (failed, stopped: by whom)."""
    done = replace(
        build,
        state=state,
        progress=build.progress if progress is None else progress,
        endTime=act.instant(),
    )
    return replace(done, summary=why) if why else done


def stopped_why(build: builder_topics.Build, by: act.Actor | None) -> str:
    """Who stopped it, and where: a person's Stop, or the builder shutting down."""
    if by is None:
        return f"stopped at {build.progress} %: the builder was shut down"
    return f"stopped by {by.name or by.id} at {build.progress} %"


def with_history(
    history: list[builder_topics.Build], build: builder_topics.Build
) -> list[builder_topics.Build]:
    """Newest first, one entry per build id, bounded."""
    rest = [b for b in history if b.id != build.id]
    return [build, *rest][:HISTORY_SIZE]
