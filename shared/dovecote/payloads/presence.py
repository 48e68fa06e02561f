"""A worker's presence: the retained Join that says it is online, and the Leave (its
Last Will) that says it is not (``services/{service}/{instance}``)."""

from __future__ import annotations

from typing import Annotated, Literal

from dovecote.as2 import Activity, Iri, Model, Name, doc


class ServiceInstance(Model):
    type: Literal["Service"]
    id: Annotated[
        Iri,
        doc("`urn:dovecote:service:<service>:<instance>`."),
    ]
    name: Annotated[
        Name,
        doc("The service."),
    ]
    instance: Annotated[
        Name,
        doc("The worker within its service (`DOVECOTE_INSTANCE`)."),
    ]
    status: Annotated[
        Literal["online", "offline"],
        doc(
            "`online` (a retained Join) or `offline` (a Leave: a clean stop, or the "
            "worker's Last Will)."
        ),
    ]
    pid: Annotated[
        int | None,
        doc("The worker's process id (operators' tools only)."),
    ] = None
    host: Annotated[
        Name | None,
        doc("The worker's host name (operators' tools only)."),
    ] = None


class Presence(Activity):
    type: Literal["Join", "Leave"]
    object: Annotated[
        ServiceInstance,
        doc("The worker."),
    ]
