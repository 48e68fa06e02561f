"""How long to wait before connecting again: to a broker that cannot be reached, and after
losing a connection the broker had accepted.

``Backoff``: capped exponential delays with jitter, so that many workers that lost the same
broker do not all come back in the same instant.

``AfterLoss``: a connection lost after it held for a while is a lost node (a broker node
killed, a network cut): connect again at once, to the next node, so a cluster's failover
takes milliseconds. A connection cut soon after the broker accepted it, again and again, is
a broker that takes us and drops us (RabbitMQ 3.10 closing a connection whose subscription
it cannot serve: issue 22, 1,060 reconnects in 3 minutes, each sending the state query that
made every service republish): from the second such cut in a row, the delays of a
``Backoff``, until a connection holds again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["AfterLoss", "Backoff"]

# A connection that held this long was fine: its loss is the node's, not a flapping broker's.
HELD_AFTER = 10.0


@dataclass(frozen=True)
class Backoff:
    first: float = 0.25
    factor: float = 2.0
    cap: float = 15.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay * random.uniform(0.8, 1.2)
            delay = min(delay * self.factor, self.cap)


@dataclass
class AfterLoss:
    """The wait before connecting again after an accepted connection was lost.

    ``lost(lived)`` with how long the connection lasted (seconds) returns the delay: 0 after a
    connection that held ``held_after`` seconds or more (and the count starts over), 0 after
    the first short one (a node lost right after failing over to it is still a failover), then
    the ``Backoff``'s delays, exponential with jitter and capped, for as long as connections
    keep being cut short.
    """

    backoff: Backoff = field(default_factory=Backoff)
    held_after: float = HELD_AFTER
    cuts: int = 0  # short-lived connections in a row, now
    _delays: Iterator[float] | None = field(default=None, repr=False)

    def lost(self, lived: float) -> float:
        if lived >= self.held_after:
            self.cuts = 0
            self._delays = None
            return 0.0
        self.cuts += 1
        if self.cuts == 1:
            return 0.0
        if self._delays is None:
            self._delays = self.backoff.delays()
        return next(self._delays)
