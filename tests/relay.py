"""A TCP relay between a client and its broker that a test can cut: the network, made to fail.

- ``block()``: every link through it is closed and new ones are refused (the broker is out of
  reach: a node gone, a cable pulled); ``unblock()`` lets them through again;
- ``cut_after_connack``: each link is closed that many seconds after the broker's CONNACK
  has passed through it: a broker that accepts a client and then drops it, again and again
  (what a RabbitMQ 3.10 node does to a clean session whose queue's home node is down,
  issue 22).

It counts the links it made and the CONNACKs it passed on.
"""

from __future__ import annotations

import asyncio
import contextlib

from dovecote.tools.broker import free_port


class Relay:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = free_port()
        self.cut_after_connack: float | None = None
        self.links = 0  # connections made through it (to the broker)
        self.connacks = 0  # CONNACKs passed on
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def block(self) -> None:
        """Out of reach: close what goes through, refuse what comes."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._cancel_links()

    async def unblock(self) -> None:
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        await self.block()

    async def _cancel_links(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._link(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _link(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            down_w.close()
            return
        self.links += 1
        cut: list[asyncio.TimerHandle] = []

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, from_broker: bool) -> None:
            first = from_broker
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
                if first and data[0] == 0x20:  # the broker's first packet: its CONNACK
                    self.connacks += 1
                    if self.cut_after_connack is not None:
                        task = asyncio.current_task()
                        assert task is not None
                        loop = asyncio.get_running_loop()
                        cut.append(loop.call_later(self.cut_after_connack, task.cancel))
                first = False

        ways = {
            asyncio.ensure_future(pipe(down_r, up_w, False)),
            asyncio.ensure_future(pipe(up_r, down_w, True)),
        }
        try:
            await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for handle in cut:
                handle.cancel()
            for way in ways:
                way.cancel()
            await asyncio.gather(*ways, return_exceptions=True)
            for w in (down_w, up_w):
                with contextlib.suppress(Exception):
                    w.close()
