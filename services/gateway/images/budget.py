"""One memory budget for the gateway's image decoding: every request's, together.

The image threads decode what a request needs (an upload proven by Pillow, a PNG turned
upright), each job costing what its header says it will take (``containers/``). A job
runs only once its bytes fit in what is left of the budget; the others wait in line, in
the order they came (a large job is not starved by small ones behind it). A job larger
than the whole budget is refused at once (413), and one that waits longer than ``wait``
is told to come back (503): its request gives up, and with it the upload it holds.

The bytes are given back when the thread's work *ends*, not when its request does: a
request cancelled mid-decode (the client went away) does not free memory its thread still
holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from services.gateway.images.checks import BadImage

T = TypeVar("T")
DECODE_BUDGET = 128 * 2**20  # IMAGE_DECODE_BUDGET_BYTES' default
WAIT = 30.0  # seconds a job may wait for its bytes before its request is answered 503


class MemoryBudget:
    """``total`` bytes shared by every decoding job of the process."""

    def __init__(self, total: int, wait: float = WAIT) -> None:
        self.total = total
        self.free = total
        self.wait = wait
        self._line: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def run(self, pool: Executor, cost: int, job: Callable[..., T], *args: object) -> T:
        """``job(*args)`` in ``pool`` once ``cost`` bytes are free; its result."""
        if cost > self.total:
            raise BadImage(
                f"decoding it takes {cost / 2**20:,.0f} MiB, more than the gateway's whole "
                f"decoding budget ({self.total / 2**20:,.0f} MiB, IMAGE_DECODE_BUDGET_BYTES)",
                413,
            )
        await self._take(cost)
        loop = asyncio.get_running_loop()
        try:
            work = pool.submit(job, *args)
        except BaseException:
            self._give(cost)
            raise
        work.add_done_callback(lambda _: _on_loop(loop, self._give, cost))
        return await asyncio.wrap_future(work)

    @property
    def waiting(self) -> int:
        return sum(not waiter.done() for _, waiter in self._line)

    async def _take(self, cost: int) -> None:
        if not self._line and cost <= self.free:
            self.free -= cost
            return
        waiter = asyncio.get_running_loop().create_future()
        self._line.append((cost, waiter))
        try:
            async with asyncio.timeout(self.wait):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # given its bytes, then stopped
                self._give(cost)
            else:
                waiter.cancel()
                self._serve()  # a large job leaving the head of the line lets others on
            if isinstance(exc, TimeoutError):
                raise BadImage(
                    f"the gateway is busy decoding other images (over {self.wait:.0f} s in "
                    "line): try again in a moment",
                    503,
                ) from None
            raise

    def _give(self, cost: int) -> None:
        self.free += cost
        self._serve()

    def _serve(self) -> None:
        """Give the head of the line its bytes, and the next, while they fit."""
        while self._line:
            cost, waiter = self._line[0]
            if waiter.done():  # it gave up
                self._line.popleft()
                continue
            if cost > self.free:
                return
            self._line.popleft()
            self.free -= cost
            waiter.set_result(None)


def _on_loop(loop: asyncio.AbstractEventLoop, give: Callable[[int], None], cost: int) -> None:
    """From the thread that finished the job: give the bytes back on the event loop."""
    with contextlib.suppress(RuntimeError):  # a closed loop: the process ends, none waits
        loop.call_soon_threadsafe(give, cost)
