"""The topics the gateway declares itself (the rest of what it publishes is in the shared
registry, ``dovecote.topics``).

Only gateways read these: each gateway worker holds its own browsers' sockets, so when a
person's sign-in ends on one of them (sign-out, "sign out everywhere", a new password, a
token revoked), it tells the others to close that sign-in's sockets too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote import activity as act
from dovecote.topics import Topic, register

# "session:<handle>" (a browser's sign-in, services/gateway/accounts/signins.py) or "token:<id>".
Credential = Annotated[str, Meta(pattern=r"^(session:[0-9a-f]{16}|token:[0-9a-f]{12})$")]


class EndedSignIns(act.Model):
    """The sign-ins of one person that ended."""

    type: Literal["Collection"]
    attributedTo: Annotated[
        act.Actor, act.doc("Whose sign-ins they were (`preferredUsername` is the user id).")
    ]
    items: Annotated[
        list[Credential],
        Meta(min_length=1, max_length=100),
        act.doc(
            "Each ended sign-in: `session:<handle>` (a browser's, as `/account` lists it) "
            "or `token:<id>` (an API token's). Handles and ids only: no secret."
        ),
    ]


class SignInsEnded(act.Activity):
    """A person's sign-ins ended: every gateway closes the sockets opened with them."""

    type: Literal["Delete"]
    object: Annotated[EndedSignIns, act.doc("The sign-ins that ended, and whose.")]


SIGNINS_ENDED = register(
    Topic(
        "commands/gateway/disconnect",
        "gateway",
        1,
        False,
        SignInsEnded,
        "A person's sign-ins ended on one gateway (sign-out, sign out everywhere, a new "
        "password, a token revoked): every gateway worker closes the sockets opened with "
        "them (close code 4401; the page goes to the sign-in page). Requests with them are "
        "refused already: the sign-ins are gone from the shared accounts store.",
        actor="the person whose sign-ins ended, or the operator who ended them",
    )
)
