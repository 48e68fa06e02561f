"""Whether a worker can use the bus right now, and since when: for a service to say so.

The link is *up* once a connection has been accepted **and** the broker has granted the
subscriptions sent on it (its SUBACK): a connection the broker accepts and then cannot
serve (RabbitMQ closing it on a subscription it cannot make, issue 22) never counts as
up. It is *down* from the moment a connection is lost until the next one is up, and before
the first. The worker (``dovecote.worker``) moves it; a service reads it on ``bus.link``:
the gateway to tell its pages, ``/healthz`` and its answers that it cannot reach the bus
(and how many of its events wait in its outbox), the builder to say why a Start came late.
"""

from __future__ import annotations

from collections.abc import Callable

from dovecote import activity as act

__all__ = ["Link"]

Listener = Callable[["Link"], None]


class Link:
    def __init__(self, waiting: Callable[[], int] = lambda: 0) -> None:
        self.up = False
        self.since: act.Instant = act.instant()  # when it last went up or down (or was made)
        self.up_since: act.Instant | None = None  # the current connection's, while up
        self.ups = 0  # times it went up (connections that were granted their subscriptions)
        self.downs = 0  # times it went down after being up
        self._waiting = waiting
        self._listeners: list[Listener] = []

    @property
    def waiting(self) -> int:
        """What this worker published that the broker has not acknowledged: its outbox's
        rows when it has one (the gateway's 201s and 202s), else paho's unacknowledged."""
        return self._waiting()

    def watch(self, listener: Listener) -> None:
        """Call ``listener(link)`` at every change, on the event loop."""
        self._listeners.append(listener)

    def went_up(self) -> None:
        if self.up:
            return
        self.up = True
        self.ups += 1
        self.since = self.up_since = act.instant()
        self._tell()

    def went_down(self) -> None:
        if not self.up:
            return
        self.up = False
        self.downs += 1
        self.since = act.instant()
        self.up_since = None
        self._tell()

    def changed(self) -> None:
        """Something else a listener shows changed (what waits): tell them again."""
        self._tell()

    def _tell(self) -> None:
        for listener in list(self._listeners):
            listener(self)
