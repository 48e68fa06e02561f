"""Whether this gateway can reach the bus, said everywhere it answers (issue 22).

A gateway cut off from the broker still serves pages from what it last heard and still
accepts uploads and commands into its outbox: that is its promise (a 201 is kept). What it
must not do is look live while nothing it shows moves and nothing it accepts goes out. So
from the worker's link (``dovecote.link``: up once the broker has granted its
subscriptions, down from the moment the connection is lost):

- every page says so in a banner, and the dashboard's pill says "cut off from the bus"
  instead of "live" (the socket carries a ``bus`` frame at each change, and in ``hello``);
- ``/healthz`` answers 503 with the reason, so a load balancer sends browsers elsewhere;
- ``/metrics`` has ``dovecote_bus_reachable`` and how long it has not been
  (``operations/prometheus.py``);
- an upload or a command accepted meanwhile says it is queued, and how many wait.
"""

from __future__ import annotations

from typing import Any

from dovecote.link import Link
from services.gateway.bus.hub import notice


def of(link: Link) -> dict[str, Any]:
    """What pages and scripts get: reachable, since when (RFC 3339), how many wait."""
    return {"reachable": link.up, "since": link.since.rfc3339(), "waiting": link.waiting}


def frame(link: Link) -> bytes:
    """The socket frame a page gets at each change (and at each upload queued meanwhile)."""
    return notice("bus", **of(link))


def waiting_words(waiting: int) -> str:
    if waiting == 0:
        return "nothing waits in its outbox"
    if waiting == 1:
        return "1 upload or command waits in its outbox"
    return f"{waiting} uploads or commands wait in its outbox"


def headline(link: Link) -> str:
    """The banner's words; the dashboard's script writes the same from a ``bus`` frame."""
    since = link.since.strftime("%H:%M:%S UTC")
    return (
        f"This gateway cannot reach the message bus (since {since}): what you see may be out "
        f"of date, and {waiting_words(link.waiting)}; they go out when it is back."
    )


def queued(link: Link, acked: bool | None = None) -> dict[str, Any]:
    """Fields for the answer to an accepted upload or command: none while the bus is
    reachable (``acked`` False: reachable, but the broker did not acknowledge it in time);
    else that it is queued, and how many wait (this one included)."""
    if link.up and acked is not False:
        return {}
    why = (
        "the broker has not acknowledged it yet: it is kept in this gateway's outbox until it does"
        if link.up
        else "this gateway cannot reach the message bus: it is kept in its outbox and sent "
        "when the bus is back"
    )
    return {"queued": True, "waiting": link.waiting, "why": why}
