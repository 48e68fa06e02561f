"""The websocket hub: which browser gets which bus message, and how fast.

A frame is built once per bus message by gluing the broker's payload bytes into a small JSON
envelope, ``{"seq": n, "key": k, "topic": ..., "activity": <payload as received>}``, then
framed once (``frames.text_frame``): nothing is decoded, re-encoded or re-framed per socket.
``key`` names the message on every gateway, ``seq`` numbers the frames of this process; the
replay ring (``replay.py``) keeps the newest, so a page that reconnects to any gateway gets
what it missed (docs/websocket.md has the protocol).

Fan-out writes those bytes straight to each socket's transport, and frames broadcast in one
event-loop turn (a burst read from the broker) go out joined, one write per socket: the
kernel's ``send`` is most of the cost of a delivery (measured with py-spy), so a burst of k
messages costs each socket one system call instead of k. A socket whose transport already
holds more than ``HIGH_WATER`` bytes (its browser reads slowly) gets its frames held in its
own queue instead, written as it drains; when that queue passes ``QUEUE_BYTES`` the socket
is closed with 1013 (try again later) and its page reconnects. So a stuck browser neither
grows the gateway's memory nor delays anyone else. An idle socket costs one small object.

Writing beside the socket's own frames is safe because every frame is written whole, in one
synchronous ``transport.write`` (ours, and the socket's pongs, pings and close frames:
``browser_socket.py``), and the sockets are uncompressed (no extension is ever agreed).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection, Iterable

import orjson
from aiohttp import WSCloseCode

from services.gateway.bus.browser_socket import BrowserSocket
from services.gateway.bus.frames import text_frame
from services.gateway.bus.replay import CURSOR_KEYS, ReplayRing, key_of

log = logging.getLogger("dovecote.gateway.hub")

HIGH_WATER = 64 * 1024  # bytes in a transport's buffer before frames wait in our queue
QUEUE_BYTES = 1024 * 1024  # bytes held back for one socket before it counts as stuck
DRAIN_EVERY = 0.01  # seconds between attempts to drain the sockets that lag
SLOW_CLOSE_CODE = WSCloseCode.TRY_AGAIN_LATER  # 1013
# The sign-in the socket was opened with ended (sign-out, a new password, a token revoked):
# an application code (4000-4999), which the page answers by going to the sign-in page.
SIGNED_OUT_CODE = 4401
REPLAY_BYTES = 4 * 1024 * 1024  # default budget of the replay ring (GATEWAY_REPLAY_BYTES)


def envelope(seq: int, key: str, topic: str, payload: bytes) -> bytes:
    """The frame for one bus message; ``payload`` is already valid JSON (it was validated)."""
    return b'{"seq":%d,"key":"%s","topic":%b,"activity":%b}' % (
        seq,
        key.encode(),
        orjson.dumps(topic),
        payload,
    )


def notice(kind: str, **fields: object) -> bytes:
    """A frame from the gateway itself (hello, ack, error)."""
    return orjson.dumps({"type": kind, **fields})


class Client:
    """One browser socket: its person (None: signed out) and the sign-in it came with, its
    transport and, only while it lags, its queue."""

    __slots__ = ("backlog", "credential", "held", "hub", "transport", "user", "ws")

    def __init__(
        self,
        hub: Hub,
        ws: BrowserSocket,
        transport: asyncio.Transport,
        user: str | None,
        credential: str | None = None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.user = user
        self.credential = credential  # "session:<handle>" or "token:<id>" (web/sessions.py)
        self.backlog: deque[bytes] | None = None
        self.held = 0  # bytes in backlog

    def push(self, frame: bytes) -> bool:
        """Send one frame to this socket alone. False (and it is being closed) when stuck."""
        self.hub.flush()  # what was broadcast before goes first
        if self.write(text_frame(frame)):
            return True
        self.hub.drop_stuck(self)
        return False

    def write(self, data: bytes) -> bool:
        """Write framed bytes now, or hold them while the socket lags. False when stuck."""
        if self.backlog is None:
            transport = self.transport
            if transport.get_write_buffer_size() <= HIGH_WATER:
                if not self.ws.closed and not transport.is_closing():
                    transport.write(data)
                return True  # a closing socket: the read side notices and leaves
            self.backlog = deque()
            self.hub.lagging(self)
        self.backlog.append(data)
        self.held += len(data)
        return self.held <= QUEUE_BYTES

    def drain(self) -> bool:
        """Write held frames while the transport takes them. True once nothing is held."""
        backlog, transport = self.backlog, self.transport
        if backlog is None:
            return True
        if self.ws.closed or transport.is_closing():
            backlog.clear()
        while backlog and transport.get_write_buffer_size() <= HIGH_WATER:
            data = backlog.popleft()
            self.held -= len(data)
            transport.write(data)
        if backlog:
            return False
        self.backlog, self.held = None, 0
        return True


class Hub:
    """Every connected browser, the retained frames a newcomer needs first, and the newest
    frames for a browser that comes back."""

    def __init__(self, replay_bytes: int = REPLAY_BYTES) -> None:
        self.ring = ReplayRing(replay_bytes)
        self.clients: set[Client] = set()
        self.by_user: dict[str, set[Client]] = {}
        self.retained: dict[str, bytes] = {}  # topic -> latest frame (state, presence)
        self._batch: list[bytes] = []  # framed, broadcast this loop turn, not yet written
        self._lagging: set[Client] = set()
        self._drainer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._news: asyncio.Event | None = None  # set at the next frame held
        # counted for the gateway's metrics report (services/gateway/service.py: readings)
        self.slow_closes = 0  # sockets closed with 1013
        self.replays = 0  # pages that came back and resumed from the ring
        self.replays_refused = 0  # pages that came back and could not (they reload)

    def join(self, ws: BrowserSocket, user: str | None, credential: str | None = None) -> Client:
        """Register an open socket; the frames broadcast from now on are its frames.
        ``user``: whose frames it also gets (``send_to_user``); None gets the public ones.
        ``credential``: the sign-in it was opened with (``close_ended`` closes it)."""
        transport = ws.transport
        if transport is None:
            raise ConnectionResetError("the browser left before its socket joined")
        self.flush()  # frames broadcast before it joined are not its frames
        client = Client(self, ws, transport, user, credential)
        self.clients.add(client)
        if user is not None:
            self.by_user.setdefault(user, set()).add(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        self._lagging.discard(client)
        client.backlog = None
        users = self.by_user.get(client.user) if client.user is not None else None
        if users is not None and client.user is not None:
            users.discard(client)
            if not users:
                del self.by_user[client.user]

    def snapshot(self) -> Iterable[bytes]:
        return list(self.retained.values())

    def welcome(self, client: Client, cursor: list[str] | None, **hello: object) -> None:
        """A socket's first frames: hello, then what it missed after ``cursor`` (the keys of
        the last frames its page applied, on this gateway or another), or, for a newcomer or
        one that cannot resume, the retained state. Call right after ``join``, with no await
        between: from ``hello``'s seq on, the broadcasts are its own."""
        ring = self.ring
        if cursor is not None:
            reason = ring.why_not(cursor, client.user)
            missed = ring.after(cursor, client.user) if reason is None else []
            size = sum(map(len, missed))
            if size > QUEUE_BYTES:  # no more than a lagging socket may hold
                reason = f"{size // 1024} KiB missed: more than a socket may be sent at once"
            if reason is None:
                self.replays += 1
                client.push(notice("hello", seq=ring.seq, resumed=True, **hello))
                if missed:
                    client.write(b"".join(missed))
                return
            self.replays_refused += 1
            client.push(notice("cannot-resume", reason=reason))
        after = ring.recent(client.user, CURSOR_KEYS)
        client.push(notice("hello", seq=ring.seq, resumed=False, after=after, **hello))
        for frame in self.snapshot():
            client.push(frame)

    async def heard(self, cursor: list[str], user: str | None, wait: float) -> None:
        """Give this gateway up to ``wait`` seconds to hear the cursor's newest frames: a page
        that left another gateway a moment ago may have seen frames not yet delivered here."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while not self.ring.holds_newest(cursor, user):
            left = until - loop.time()
            if left <= 0:
                return
            if self._news is None:
                self._news = asyncio.Event()
            try:
                await asyncio.wait_for(self._news.wait(), left)
            except TimeoutError:
                return

    def _held(self) -> None:
        """A new frame is held: wake the pages waiting to hear theirs (``heard``)."""
        if self._news is not None:
            self._news.set()
            self._news = None

    def broadcast(
        self,
        topic: str,
        payload: bytes,
        activity_id: str,
        retain: bool = False,
        live: bool = True,
    ) -> bytes | None:
        """Send to every socket: at the end of this loop turn, with the rest of the burst.
        ``retain``: also the frame a newcomer gets first (state, presence). ``live``: False
        for a retained message the broker sent on subscribing (``ReplayRing.add``). Returns
        the frame (unframed JSON), or None for a message already sent (a redelivery)."""
        ring = self.ring
        key = key_of(topic, activity_id)
        frame = envelope(ring.seq + 1, key, topic, payload)
        data = text_frame(frame)
        if ring.add(key, None, data, live) is None:
            return None
        self._held()
        if retain:
            self.retained[topic] = frame
        if not self._batch:
            asyncio.get_running_loop().call_soon(self.flush)
        self._batch.append(data)
        return frame

    def announce(self, frame: bytes) -> None:
        """A frame from the gateway itself (not from the bus: not numbered, not replayed)
        to every socket, after what was broadcast before it."""
        self.flush()
        for client in list(self.clients):
            client.push(frame)

    def send_to_user(self, user: str, topic: str, payload: bytes, activity_id: str) -> None:
        """Send to that person's sockets only (now, and on a replay)."""
        key = key_of(topic, activity_id)
        data = text_frame(envelope(self.ring.seq + 1, key, topic, payload))
        if self.ring.add(key, user, data) is None:  # held even if none is connected now
            return
        self._held()
        clients = self.by_user.get(user)
        if not clients:
            return
        self.flush()
        stuck = [client for client in clients if not client.write(data)]
        for client in stuck:
            self.drop_stuck(client)

    def flush(self) -> None:
        """Write the frames broadcast so far to every socket, one write per socket."""
        batch = self._batch
        if not batch:
            return
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        batch.clear()
        stuck = [client for client in self.clients if not client.write(data)]
        for client in stuck:
            self.drop_stuck(client)

    def queued_bytes(self) -> tuple[int, int]:
        """Bytes held back in our own queues for slow sockets, and bytes in the sockets'
        transport buffers (written, not yet taken by the kernel)."""
        held = sum(client.held for client in self._lagging)
        buffered = sum(client.transport.get_write_buffer_size() for client in self.clients)
        return held, buffered

    def lagging(self, client: Client) -> None:
        self._lagging.add(client)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().call_later(DRAIN_EVERY, self._drain)

    def _drain(self) -> None:
        self._drainer = None
        caught_up = [client for client in self._lagging if client.drain()]
        self._lagging.difference_update(caught_up)
        if self._lagging:
            self._drainer = asyncio.get_running_loop().call_later(DRAIN_EVERY, self._drain)

    def drop_stuck(self, client: Client) -> None:
        """Close a socket whose browser stopped reading: 1013, so its page reconnects."""
        if client not in self.clients:
            return
        log.warning(
            "closing a socket of %s: %d KiB of frames unread", client.user, client.held // 1024
        )
        self.slow_closes += 1
        self._close(client, SLOW_CLOSE_CODE, b"too slow: queue full")

    def credentials(self) -> set[str]:
        """The sign-ins this process's sockets were opened with."""
        return {c.credential for c in self.clients if c.credential is not None}

    def close_ended(self, ended: Collection[str], user: str | None = None) -> int:
        """Close the sockets opened with these sign-ins (4401: the page goes to sign in);
        only ``user``'s, when given (a message from another gateway names them). How many."""
        clients = self.by_user.get(user, ()) if user is not None else self.clients
        closing = [c for c in clients if c.credential in ended]
        for client in closing:
            self._close(client, SIGNED_OUT_CODE, b"signed out")
        return len(closing)

    def _close(self, client: Client, code: int, message: bytes) -> None:
        self.leave(client)
        task = asyncio.get_running_loop().create_task(self._closed(client, code, message))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _closed(self, client: Client, code: int, message: bytes) -> None:
        try:
            await asyncio.wait_for(client.ws.close(code=code, message=message), 2)
        except Exception:
            client.transport.abort()  # the close frame cannot get past what it did not read

    async def close_all(self) -> None:
        """On shutdown: tell every browser we are going away (1001), so pages reconnect."""
        self.flush()
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
        clients = tuple(self.clients)
        for client in clients:
            self.leave(client)
        loop = asyncio.get_running_loop()
        closing = [
            loop.create_task(client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"stopping"))
            for client in clients
        ]
        if closing:  # all at once: one by one, 10,000 sockets would take minutes
            _, late = await asyncio.wait(closing, timeout=2)
            for task in late:
                task.cancel()
            await asyncio.gather(*closing, return_exceptions=True)
