"""A bus client for tests: records every message under a root, waits for some.

Nameko's ``entrypoint_waiter``, on a real broker (``dovecote.mqtt.Connection``) or on the
in-memory bus (``dovecote_testing.memory``): the same waits either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from dovecote import activity as act
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.transport import Connect, Transport


class Probe:
    """A bus client for tests: records every message under the root, waits for some."""

    def __init__(
        self,
        url: str,
        root: str,
        persistent: bool = False,
        *,
        client_id: str | None = None,
        ca_file: str | None = None,
        connect: Connect = Connection,
    ) -> None:
        self.root = root
        self.messages: list[Message] = []
        self._changed = asyncio.Event()
        # persistent: the broker queues QoS 1 messages for it across its own reconnects.
        self.conn: Transport = connect(
            parse_mqtt_url(url, ca_file),
            client_id or f"probe-{uuid.uuid4().hex[:12]}",
            on_message=self._record,
            clean_session=not persistent,
            manual_ack=False,
        )

    def _record(self, msg: Message) -> None:
        self.messages.append(msg)
        self._changed.set()

    async def start(self, topic_filter: str = "#", *exact: str) -> Probe:
        self.conn.start()
        await self.conn.wait_connected(10)
        subs = [self.conn.subscribe(f"{self.root}/{topic_filter}", 1)]
        subs += [self.conn.subscribe(f"{self.root}/{t}", 1) for t in exact]
        await asyncio.gather(*(s for s in subs if s is not None))
        return self

    def publish(
        self,
        rel_topic: str,
        payload: bytes | dict[str, Any] | act.Activity,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Raw bytes as they are; an activity, typed or a hand-made dict (it may hold typed
        parts), encoded as the runtime encodes it."""
        data = payload if isinstance(payload, bytes) else act.encode(payload)
        self.conn.publish(f"{self.root}/{rel_topic}", data, qos, retain)

    def on(self, rel_topic: str) -> list[dict[str, Any]]:
        """Decoded payloads seen on one topic (relative to the root), oldest first."""
        topic = f"{self.root}/{rel_topic}"
        return [orjson.loads(m.payload) for m in self.messages if m.topic == topic and m.payload]

    async def wait_for(
        self,
        rel_topic: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 15.0,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` payloads on the topic satisfy ``where``; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [a for a in self.on(rel_topic) if where(a)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                seen = sorted({m.topic for m in self.messages})
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {count} on {rel_topic} "
                    f"(got {len(found)}); topics seen: {seen}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_online(
        self, service: str, instance: str = "1", timeout: float = 15.0, *, restarted: bool = False
    ) -> dict[str, Any]:
        """Wait for a worker's presence Join. A worker subscribes before it announces itself,
        so from then on what is published reaches it.

        ``restarted=True``: a Join from a process not seen before (another pid), not the one
        already here: after restarting a service, wait for the new process, not the old
        Join (retained, and kept by this probe)."""
        topic = f"services/{service}/{instance}"
        before = (
            {a["object"].get("pid") for a in self.on(topic) if a["type"] == "Join"}
            if restarted
            else set()
        )
        joins = await self.wait_for(
            topic,
            lambda a: a["type"] == "Join" and a["object"].get("pid") not in before,
            timeout,
        )
        return joins[-1]

    async def stop(self) -> None:
        await self.conn.stop(2)


async def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.05)
