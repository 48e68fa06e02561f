"""Do something at most once per interval; what is asked meanwhile is done once, at its end.

For what every reconnect or every question would otherwise repeat: the state query a worker
sends on connecting, and the answer (presence, retained state) every worker gives to each
query. One gateway reconnecting 1,060 times in 3 minutes made every service re-announce
itself and republish its state 1,060 times (issue 22). Coalesced, a burst of requests costs
one action now and at most one more at the end of the interval, whatever its size; nothing
asked is dropped. An action that could not be done (it returns False: a question due while
disconnected) does not count: the next request runs at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    def __init__(self, interval: float, action: Callable[[], bool | None]) -> None:
        self.interval = interval
        self._action = action
        self._last: float | None = None  # loop time of the last run
        self._timer: asyncio.TimerHandle | None = None
        self.requests = 0
        self.runs = 0

    def request(self) -> None:
        """Run now if the last run is an interval old; else once, when it will be."""
        self.requests += 1
        if self._timer is not None:
            return  # a run is due: this request is part of it
        loop = asyncio.get_running_loop()
        wait = 0.0 if self._last is None else self._last + self.interval - loop.time()
        if wait <= 0:
            self._run()
        else:
            self._timer = loop.call_later(wait, self._run)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        if self._action() is False:
            return  # not done: not a run, and the next request need not wait for it
        self._last = asyncio.get_running_loop().time()
        self.runs += 1
