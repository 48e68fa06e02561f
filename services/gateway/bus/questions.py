"""Questions the gateway asks another service on the bus, answered by ``inReplyTo``.

The command goes out (not through the outbox: nobody was promised anything yet), the
answer comes back on a ``replies/<service>/<request>`` topic every gateway worker
subscribes to, and the worker that asked takes it; another worker's answers, and the
command-line tools', are not ours and are ignored. No answer within the timeout: None.
"""

from __future__ import annotations

import asyncio
import logging

from dovecote.errors import BusError
from dovecote.service import Publish
from dovecote.topics import P, Topic

log = logging.getLogger("dovecote.gateway.questions")


class Questions:
    def __init__(self, ask: Publish, timeout: float) -> None:
        self._ask = ask
        self.timeout = timeout
        self.pending: dict[str, asyncio.Future[bytes]] = {}

    async def ask(self, entry: Topic[P], command: P) -> bytes | None:
        """Send ``command``; the answer's payload, or None when none came in time."""
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[command.id] = answer
        try:
            self._ask(entry, command)
            return await asyncio.wait_for(answer, self.timeout)
        except (TimeoutError, BusError) as exc:
            log.warning("no answer on %s: %r", entry.pattern, exc)
            return None
        finally:
            self.pending.pop(command.id, None)

    def answered(self, in_reply_to: str, payload: bytes) -> None:
        answer = self.pending.get(in_reply_to)
        if answer is not None and not answer.done():
            answer.set_result(payload)
