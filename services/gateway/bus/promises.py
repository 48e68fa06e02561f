"""An upload's 201 is a promise: kept once the broker has acknowledged the upload's event.

Until then the event is only in this gateway's outbox, a file of this machine: a machine
lost in that moment would take it along, while the page was told "done". So the answer waits
a moment for the broker's acknowledgement (``PROMISE_WAIT``), and says "queued" when it did
not come in time (docs/operating.md, "When a gateway cannot reach the bus").
"""

from __future__ import annotations

import asyncio

from dovecote import Bus
from dovecote.topics import P, Topic

PROMISE_WAIT = 2.0  # seconds an answer waits for the broker's acknowledgement


def publish(bus: Bus, entry: Topic[P], activity: P) -> tuple[bytes, asyncio.Future[None]]:
    """Publish through the outbox; the payload, and a future done once the broker acked it."""
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_acked() -> None:
        if not acked.done():
            acked.set_result(None)

    return bus.publish(entry, activity, durable=True, on_acked=on_acked), acked


async def kept(acked: asyncio.Future[None], wait: float = PROMISE_WAIT) -> bool:
    """Whether the broker acknowledged within ``wait`` seconds."""
    try:
        await asyncio.wait_for(asyncio.shield(acked), wait)
    except TimeoutError:
        return False
    return True
