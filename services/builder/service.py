"""Builder handlers: start and stop commands in, progress and state out.

| listens to                   | publishes                                              |
|------------------------------|--------------------------------------------------------|
| commands/builder/start, stop | events/build/started, progress, succeeded, failed,     |
| state/build, state/builds    | stopped, rejected; state/build and state/builds (retained) |

The builder keeps nothing it cannot rebuild: on start-up its own retained ``state/build``
and ``state/builds`` tell it the build count, the history and whether a build of this very
worker was interrupted by a crash. The runtime says when they have all arrived
(``retained_arrived``), so a first command waits milliseconds for them, not a guessed while.

A start command carries the moment it was sent (``published``): one older than
``BUILD_COMMAND_MAX_AGE`` when the builder gets it is refused with the reason, never run
late. The reason names where it waited: queued for the builder while the builder was
offline, or (the builder online since before it was sent) on its way to the bus, in a
gateway that could not reach it (its outbox, issue 22). Every build that ends other than
by succeeding says why (``summary``), and a stopped one who stopped it (``stoppedBy``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from msgspec.structs import replace

from dovecote import Bus, Delivery, Service, handles, topics
from dovecote import activity as act
from dovecote.config import Settings
from services.builder import build as b
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics

# At most this many seconds a first command waits for the retained history: normally the
# runtime says it has arrived (or that there is none) within milliseconds of connecting.
RESTORE_WAIT = 2.0

FINAL_TOPIC = {
    "succeeded": builder_topics.BUILD_SUCCEEDED,
    "failed": builder_topics.BUILD_FAILED,
    "stopped": builder_topics.BUILD_STOPPED,
}


class Builder(Service):
    name = "builder"
    eager_handlers = True  # handlers only publish and start the build task

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        self.tick = settings.get_float("BUILD_TICK_SECONDS", 1.0, 0.0, 60.0)
        self.max_age = settings.get_float("BUILD_COMMAND_MAX_AGE", 10.0, 1.0, 86400.0)
        self.stopped_by: act.Actor | None = None  # who asked to stop the running build
        self.current: builder_topics.Build | None = None  # the build this worker runs
        self.context: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_state: builder_topics.Build | None = None  # the federation's, from state/build
        self.history: list[builder_topics.Build] = []
        self.total = 0
        self.worker = f"{self.name}.{bus.instance}"
        self.restored = asyncio.Event()  # our retained history has arrived (or never will)
        # This worker's own build as the bus last showed it before this process ran any:
        # running there means a previous process of this worker died mid-build.
        self.orphan: builder_topics.Build | None = None
        self.orphan_context: str | None = None
        self.settling: asyncio.Task[None] | None = None
        # The latest state/build and state/builds seen on the bus (this worker's own
        # included), as activities: what this worker republishes when asked, if it owns them.
        self.seen_state: builder_topics.BuildUpdated | None = None
        self.seen_history: builder_topics.BuildHistoryUpdated | None = None

    async def setup(self) -> None:
        # A fallback only: the runtime's retained_arrived normally comes long before this.
        self.settling = asyncio.get_running_loop().create_task(self._settle_after_restore())

    async def retained_arrived(self) -> None:
        self.restored.set()
        self._report_orphan()

    async def _settle_after_restore(self) -> None:
        await asyncio.sleep(RESTORE_WAIT)
        self.restored.set()
        self._report_orphan()

    def _report_orphan(self) -> None:
        """Say that the build a dead process of this worker was running was interrupted,
        instead of leaving the dashboard with a bar that never moves again."""
        if self.current is None and self.orphan is not None:
            self.current, self.context = self.orphan, self.orphan_context
            self.orphan = None
            self._finish("failed", "interrupted: the builder restarted mid-build")

    @handles(gateway_topics.BUILD_START)
    async def on_start(self, activity: gateway_topics.StartBuild, _: Delivery) -> None:
        age = (datetime.now(UTC) - activity.published).total_seconds()  # as it arrives
        if age > self.max_age:
            self._reject(activity, expired_why(activity, age, self.bus.link.up_since))
            return
        if not self.restored.is_set():
            # A command queued while we were down arrives before the retained history
            # (sent only after we resubscribe): wait for it, or numbering starts over.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.restored.wait(), RESTORE_WAIT)
            self.restored.set()
        self._report_orphan()
        running = self.current or (
            self.last_state if self.last_state and self.last_state.state == "running" else None
        )
        if running is not None:
            self._reject(activity, f"{running.name} is already running")
            return
        self.total += 1
        actor = activity.actor
        self.current = b.new_build(self.total, activity.object.shouldFail, actor, self.worker)
        self.context = activity.context or activity.id
        self.log.info(
            "%s started by %s [context=%s]",
            self.current.name,
            actor.name or actor.id,
            self.context,
        )
        self.bus.publish(
            builder_topics.BUILD_STARTED,
            builder_topics.BuildCreated(
                **act.envelope(),
                type="Create",
                actor=self.bus.actor,
                object=self.current,
                context=self.context,
            ),
        )
        self._publish_state(None)
        self.task = asyncio.get_running_loop().create_task(self._run())

    @handles(gateway_topics.BUILD_STOP, shared=False)  # every worker hears it; the owner acts
    async def on_stop(self, activity: gateway_topics.StopBuild, _: Delivery) -> None:
        wanted = activity.object.id
        if self.task is None or self.current is None:
            self.log.info("stop: no build running on this worker")
            return
        if wanted is not None and wanted != self.current.id:
            self._reject(activity, f"{wanted} is not the running build")
            return
        self.stopped_by = activity.actor
        await self._cancel()

    @handles(builder_topics.BUILD_STATE, shared=False)
    async def on_state(self, activity: builder_topics.BuildUpdated, _: Delivery) -> None:
        self.seen_state = activity
        state = activity.object
        if state.worker != self.worker:
            self.last_state = state  # another worker's build: remember it is running
        elif self.current is None:
            # Our own build, from before this process ran one: the retained copy, or copies
            # the dead process left queued in our persistent session. Those come first, in
            # order, and the retained copy (the same id) is then skipped as seen, so the
            # last one seen is the latest: reported once the restore has settled. (Echoes
            # of this process's own publishes are ignored: it knows its build better.)
            running = state.state == "running"
            self.orphan, self.orphan_context = (
                (state, activity.context) if running else (None, None)
            )

    @handles(builder_topics.BUILD_HISTORY, shared=False)
    async def on_history(self, activity: builder_topics.BuildHistoryUpdated, _: Delivery) -> None:
        self.seen_history = activity
        self.restored.set()
        if not self.history:
            self.history = list(activity.object.orderedItems)
        self.total = max(self.total, activity.object.totalItems)

    def republish_state(self) -> None:
        """The latest build and history, as last published, if this worker owns them: it
        runs the build now, or ran the latest one (a builder pool answers once)."""
        state = self.seen_state
        if state is None or (self.current is None and state.object.worker != self.worker):
            return
        self.bus.publish(
            builder_topics.BUILD_STATE, state
        )  # the same activity id: seen ones skip it
        if self.seen_history is not None:
            self.bus.publish(builder_topics.BUILD_HISTORY, self.seen_history)

    async def teardown(self) -> None:
        if self.settling is not None:
            self.settling.cancel()
        if self.task is not None and self.current is not None:
            await self._cancel()

    async def _cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.current is not None:  # cancelled before its first line ran
            by, self.stopped_by = self.stopped_by, None
            self._finish("stopped", b.stopped_why(self.current, by), by)

    # --- the fake build ----------------------------------------------------------------------

    async def _run(self) -> None:
        assert self.current is not None
        try:
            while self.current.state == "running":
                await asyncio.sleep(self.tick)
                self.current = b.advanced(self.current)
                if self.current.state == "running":
                    self._announce(builder_topics.BUILD_PROGRESS)
            self._finish(self.current.state)
        except asyncio.CancelledError:
            by, self.stopped_by = self.stopped_by, None
            self._finish("stopped", b.stopped_why(self.current, by), by)
            raise

    def _finish(
        self, state: builder_topics.BuildState, why: str | None = None, by: act.Actor | None = None
    ) -> None:
        assert self.current is not None
        build = self.current
        if build.state != state:
            build = b.finished(build, state, why=why)
        if by is not None:
            build = replace(build, stoppedBy=by)
        why = build.summary if build.summary is not None else why
        self.current = build
        self.history = b.with_history(self.history, build)
        self.total = max(self.total, len(self.history))
        self._announce(FINAL_TOPIC[state], summary=why)
        self.seen_history = builder_topics.BuildHistoryUpdated(
            **act.envelope(),
            type="Update",
            actor=self.bus.actor,
            object=builder_topics.BuildHistory(
                type="OrderedCollection", totalItems=self.total, orderedItems=self.history
            ),
        )
        self.bus.publish(builder_topics.BUILD_HISTORY, self.seen_history)
        self.log.info("%s %s at %d%% [context=%s]", build.name, state, build.progress, self.context)
        self.current, self.task = None, None

    def _announce(
        self, event: topics.Topic[builder_topics.BuildUpdated], summary: str | None = None
    ) -> None:
        """Publish the event, then the same build as the retained state for late joiners."""
        self.bus.publish(event, self._update(summary))
        self._publish_state(summary)

    def _publish_state(self, summary: str | None) -> None:
        state = self._update(summary)
        self.bus.publish(builder_topics.BUILD_STATE, state)
        self.seen_state = state

    def _update(self, summary: str | None) -> builder_topics.BuildUpdated:
        """The build as it is now, as a new activity."""
        assert self.current is not None
        return builder_topics.BuildUpdated(
            **act.envelope(),
            type="Update",
            actor=self.bus.actor,
            object=self.current,
            context=self.context,
            summary=summary,
        )

    def _reject(self, command: act.Activity, why: str) -> None:
        self.log.info("refused %s: %s", command.type, why)
        self.bus.publish(
            builder_topics.BUILD_REJECTED,
            builder_topics.BuildRejected(
                **act.envelope(),
                type="Reject",
                actor=self.bus.actor,
                object={"type": command.type, "id": command.id},
                context=command.context or command.id,
                summary=why,
            ),
        )


def expired_why(
    command: gateway_topics.StartBuild, age: float, online_since: datetime | None
) -> str:
    """Why a start that came too late is refused: a page shows this to the person.

    ``online_since``: when this builder's connection began (None: not connected). Online
    since before the Start was sent, the builder would have had it at once: it reached the
    bus late, so its sender could not reach the bus. (Two clocks: the sender's and ours.)"""
    who = command.actor.name or command.actor.id
    if online_since is not None and online_since <= command.published:
        where = (
            "the builder was online; the gateway that accepted it could not reach the bus "
            "and kept it until it could"
        )
    else:
        where = "the builder was offline"
    return (
        f"{who}'s Start expired: it was sent {age:.0f} s ago ({where}), more than "
        "BUILD_COMMAND_MAX_AGE allows; nothing was started. Press Start again."
    )
