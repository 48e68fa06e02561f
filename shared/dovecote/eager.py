"""Running a coroutine's first step now, and the rest as a task only if it really awaits.

Python 3.12's eager tasks, by hand for 3.11: most handlers finish without suspending, and
skipping a Task and a loop turn per message is measurable (docs/performance.md). The
dispatcher calls ``coro.send(None)`` itself; when that suspends, ``finish(coro, pending)``
is an awaitable that drives the same coroutine on from where it stopped.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


def _resume(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, Any, None]:
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation or a failed future: pass it in
            try:
                pending = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                pending = coro.send(value)
            except StopIteration:
                return


class _Resumed:
    __slots__ = ("_gen",)

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self._gen = _resume(coro, pending)

    def __await__(self) -> Generator[Any, Any, None]:
        return self._gen


async def finish(coro: Coroutine[Any, Any, None], pending: Any) -> None:
    """Await the rest of a coroutine that already ran its first step (yielding ``pending``)."""
    await _Resumed(coro, pending)
