"""A TCP load balancer for tests: what stands in front of gateways on several machines.

Each connection goes to the next backend in turn; one that refuses (its machine is gone) is
skipped, as a load balancer's health check would. Bytes are piped both ways untouched, so
HTTP, keep-alive and websockets pass as they are. It records which backend each client
connection reached, so a test can tell which pages were on the machine it killed. A backend
taken out (``take_out``, as an operator does before a deploy) gets no new connections until
it is put back (``put_in``); the connections it has stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

from dovecote.tools.broker import free_port

Backend = tuple[str, int]


@dataclass
class Balancer:
    backends: list[Backend]
    host: str = "127.0.0.1"
    port: int = 0
    routed: list[Backend] = field(default_factory=list)  # each accepted connection's backend
    _server: asyncio.Server | None = None
    _turn: itertools.cycle[int] = field(init=False)
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)
    _out: set[Backend] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.backends)))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Balancer:
        self.port = self.port or free_port()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def take_out(self, backend: Backend) -> None:
        self._out.add(backend)

    def put_in(self, backend: Backend) -> None:
        self._out.discard(backend)

    async def _connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter]:
        first = next(self._turn)
        for n in range(len(self.backends)):
            backend = self.backends[(first + n) % len(self.backends)]
            if backend in self._out:
                continue
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection(*backend)
                return backend, reader, writer
        raise ConnectionRefusedError(f"no backend answers: {self.backends}")

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            backend, server_r, server_w = await self._connect()
        except OSError:
            client_w.close()
            return
        self.routed.append(backend)
        for source, sink in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.get_running_loop().create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then end the other (a killed backend resets its
    clients, as the machine's loss would)."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.close()
