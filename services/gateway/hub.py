"""The websocket hub: which browser gets which bus message, and how fast.

A frame is built once per bus message by gluing the broker's payload bytes into a small JSON
envelope, ``{"topic": ..., "activity": <payload as received>}``: nothing is decoded or
re-encoded per socket. Each socket has a bounded queue drained by its own sender, so a
browser that stops reading neither grows the gateway's memory nor delays anyone else: when
its queue is full it is closed with code 1013 (try again later) and its page reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

log = logging.getLogger("dovecote.gateway.hub")

QUEUE_LIMIT = 512  # frames waiting for one socket before it counts as stuck
SLOW_CLOSE_CODE = WSCloseCode.TRY_AGAIN_LATER  # 1013


def envelope(topic: str, payload: bytes) -> bytes:
    """The frame for one bus message; ``payload`` is already valid JSON (it was validated)."""
    return b'{"topic":' + orjson.dumps(topic) + b',"activity":' + payload + b"}"


def notice(kind: str, **fields: object) -> bytes:
    """A frame from the gateway itself (hello, ack, error)."""
    return orjson.dumps({"type": kind, **fields})


class Client:
    """One browser socket: its user, its queue, its sender."""

    __slots__ = ("_wake", "queue", "request", "sender", "user", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, user: str) -> None:
        self.ws = ws
        self.request = request
        self.user = user
        self.queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self.sender = asyncio.get_running_loop().create_task(self._send_forever())

    def push(self, frame: bytes) -> bool:
        """Queue a frame. False (and the socket is being closed) when the client is stuck."""
        if len(self.queue) >= QUEUE_LIMIT:
            self.sender.cancel()
            return False
        self.queue.append(frame)
        self._wake.set()
        return True

    async def _send_forever(self) -> None:
        ws, queue = self.ws, self.queue
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while queue:
                    await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
        except asyncio.CancelledError:
            if len(queue) >= QUEUE_LIMIT:
                log.warning("closing a socket of %s: %d frames unread", self.user, len(queue))
                queue.clear()
                try:
                    await asyncio.wait_for(
                        ws.close(code=SLOW_CLOSE_CODE, message=b"too slow: queue full"), 2
                    )
                except Exception:
                    transport = self.request.transport
                    if transport is not None:
                        transport.abort()
        except (ConnectionError, RuntimeError):
            pass  # the browser went away; the read side notices and leaves


class Hub:
    """Every connected browser, and the retained frames a newcomer needs first."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.by_user: dict[str, set[Client]] = {}
        self.retained: dict[str, bytes] = {}  # topic -> latest frame (state, presence)

    def join(self, ws: web.WebSocketResponse, request: web.Request, user: str) -> Client:
        client = Client(ws, request, user)
        self.clients.add(client)
        self.by_user.setdefault(user, set()).add(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        users = self.by_user.get(client.user)
        if users is not None:
            users.discard(client)
            if not users:
                del self.by_user[client.user]
        client.sender.cancel()

    def snapshot(self) -> Iterable[bytes]:
        return list(self.retained.values())

    def remember(self, topic: str, frame: bytes) -> None:
        self.retained[topic] = frame

    def broadcast(self, frame: bytes) -> None:
        for client in tuple(self.clients):
            if not client.push(frame):
                self.leave(client)

    def send_to_user(self, user: str, frame: bytes) -> None:
        for client in tuple(self.by_user.get(user, ())):
            if not client.push(frame):
                self.leave(client)

    async def close_all(self) -> None:
        """On shutdown: tell every browser we are going away (1001), so pages reconnect."""
        for client in tuple(self.clients):
            self.leave(client)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping"), 1
                )
