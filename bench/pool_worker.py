"""The bench's pooled service: ``python -m bench.pool_worker`` (one worker per process).

Its handler does CPU work a real service would, so that the pool and not the broker is
measured: it zlib-compresses 512 KiB (level 6, ~1.4 ms on an idle core here), the order of
decoding and thumbnailing a small JPEG with Pillow, against the runtime's ~0.1 ms a message.
Then it says so on ``events/bench/worked`` (QoS 0) for the bench to count.
"""

from __future__ import annotations

import zlib

from dovecote import Delivery, Service, handles, run, topics
from dovecote import activity as act

WORK = topics.register(
    topics.Topic(
        "events/bench/work",
        "bench",
        1,
        False,
        act.Activity,
        "Bench traffic: one unit of work for the pooled bench service.",
    )
)
WORKED = topics.register(
    topics.Topic(
        "events/bench/worked",
        "benchpool",
        0,
        False,
        act.Activity,
        "Bench traffic: the pooled bench service finished one unit of work.",
    )
)
BLOB = (b"Dovecote thumbnails are made of pixels. " * 14000)[: 512 * 1024]


class BenchPool(Service):
    name = "benchpool"

    @handles(WORK)
    async def on_work(self, activity: act.Activity, _: Delivery) -> None:
        size = len(zlib.compress(BLOB + activity.id.encode(), 6))
        done = act.Activity(
            **act.envelope(),
            type="Update",
            actor=self.bus.actor,
            object={"type": "Note", "name": activity.id},
            result={"type": "Object", "name": self.bus.instance, "size": size},
        )
        self.bus.publish(WORKED, done)


if __name__ == "__main__":
    run(BenchPool)
