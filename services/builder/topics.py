"""The builder's contract: the topics it publishes (a build's events, its retained state
and history) and their payloads. Its commands are the gateway's (``services.gateway.topics``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from dovecote.activity import Activity, Actor, Iri, Model, Name, Percent, Published, Text, doc
from dovecote.topics import Topic, register

BuildState = Literal["running", "succeeded", "failed", "stopped"]


class Build(Model):
    type: Literal["Build"]
    id: Annotated[
        Iri,
        doc("The build's IRI (`urn:uuid:...`), stable from start to finish."),
    ]
    name: Annotated[
        Name,
        doc("A display name (`Build #7`)."),
    ]
    state: Annotated[
        BuildState,
        doc(
            "`running`, then one of `succeeded`, `failed` (also: interrupted by a builder"
            " restart) or `stopped`."
        ),
    ]
    progress: Annotated[
        Percent,
        doc("Percent done, 0-100, in steps of 10."),
    ]
    shouldFail: Annotated[
        bool,
        doc("Whether this build was asked to fail at 70 % (the seed's demo)."),
    ] = False
    startTime: Annotated[
        Published | None,
        doc("When it started."),
    ] = None
    endTime: Annotated[
        Published | None,
        doc("When it finished; absent while running."),
    ] = None
    attributedTo: Annotated[
        Actor | None,
        doc("The person who asked for the build (the actor of the `Start` command)."),
    ] = None
    worker: Annotated[
        Name | None,
        doc("The builder instance running it (`DOVECOTE_INSTANCE`)."),
    ] = None
    summary: Annotated[
        Text | None,
        doc(
            "Why it ended, for people: set when it failed (asked to, or interrupted by a "
            "builder restart) or was stopped (by whom, at what progress)."
        ),
    ] = None
    stoppedBy: Annotated[
        Actor | None,
        doc("The person whose Stop ended it; absent when the builder itself stopped it."),
    ] = None


class BuildCreated(Activity):
    type: Literal["Create"]
    object: Annotated[
        Build,
        doc("The build, just started (progress 0)."),
    ]


class BuildUpdated(Activity):
    type: Literal["Update"]
    object: Annotated[
        Build,
        doc("The build as it is now."),
    ]


class BuildRejected(Activity):
    """The builder refused a command; ``summary`` says why, ``object`` is the command."""

    type: Literal["Reject"]
    object: Annotated[
        Any,
        doc("The refused command, as it arrived."),
    ]


class BuildHistory(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        Annotated[int, Meta(ge=0)],
        doc("How many builds are listed."),
    ]
    orderedItems: Annotated[
        Annotated[list[Build], Meta(max_length=100)],
        doc("The last builds, newest first (at most 100)."),
    ]


class BuildHistoryUpdated(Activity):
    type: Literal["Update"]
    object: Annotated[
        BuildHistory,
        doc("The history after the latest change."),
    ]


BUILD_STARTED = register(
    Topic(
        "events/build/started",
        "builder",
        1,
        False,
        BuildCreated,
        "A build has started (progress 0).",
        actor="the builder; `object.attributedTo` is the person who asked",
    )
)
BUILD_PROGRESS = register(
    Topic(
        "events/build/progress",
        "builder",
        0,
        False,
        BuildUpdated,
        "A progress tick of the running build. Transient: QoS 0.",
        actor="the builder; `object.attributedTo` is the person who asked",
    )
)
BUILD_SUCCEEDED = register(
    Topic(
        "events/build/succeeded",
        "builder",
        1,
        False,
        BuildUpdated,
        "A build reached 100 %.",
        actor="the builder; `object.attributedTo` is the person who asked",
    )
)
BUILD_FAILED = register(
    Topic(
        "events/build/failed",
        "builder",
        1,
        False,
        BuildUpdated,
        "A build failed (the demo fails at 70 % when asked to) or was interrupted.",
        actor="the builder; `object.attributedTo` is the person who asked",
    )
)
BUILD_STOPPED = register(
    Topic(
        "events/build/stopped",
        "builder",
        1,
        False,
        BuildUpdated,
        "A build was stopped on request before it finished.",
        actor="the builder; `object.attributedTo` is the person who asked",
    )
)
BUILD_REJECTED = register(
    Topic(
        "events/build/rejected",
        "builder",
        1,
        False,
        BuildRejected,
        "The builder refused a command (a build is already running, ...); summary says why.",
        actor="the builder; `object` is the refused command, with its own actor",
    )
)
BUILD_STATE = register(
    Topic(
        "state/build",
        "builder",
        1,
        True,
        BuildUpdated,
        "The current (or last) build, retained for late joiners.",
        actor="the builder",
    )
)
BUILD_HISTORY = register(
    Topic(
        "state/builds",
        "builder",
        1,
        True,
        BuildHistoryUpdated,
        "The last builds, newest first, retained.",
        actor="the builder",
    )
)
