"""A websocket's connection, taken from aiohttp once its upgrade request is answered.

aiohttp serves the request: the middlewares (Host, Origin, the session) and the handler's
own checks. Under aiohttp's ``WebSocketResponse`` the request would then live as long as
the socket, with everything it holds: the request and its headers, the connection's HTTP
parser and queues, two tasks and the chain of coroutines down to the handler, the
websocket's reader, queue and writer, a timer (about 12 KB a socket; docs/performance.md).
Instead the connection moves to ``BrowserSocket`` and aiohttp's handler returns at once.

How, with public interfaces only: aiohttp's transport stops reading; the connection's file
descriptor is duplicated and given a transport of its own (``connect_accepted_socket``)
with our protocol; the handler returns ``Upgraded``, a response that writes nothing, and
aiohttp closes its transport, which closes its descriptor only (no ``shutdown``): the
connection lives on in ours. TLS ends at a proxy in front of the gateway (there is no TLS
state to carry over), and a TLS connection is refused here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import socket

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from services.gateway.bus.browser_socket import BrowserSocket

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def accept_key(request: web.Request) -> bytes:
    """``Sec-WebSocket-Accept`` for a valid upgrade request; 400 with the reason otherwise
    (the checks aiohttp's ``WebSocketResponse`` makes, version 13 only)."""
    headers = request.headers
    if headers.get("Upgrade", "").strip().lower() != "websocket":
        raise web.HTTPBadRequest(text="a websocket is opened with Upgrade: websocket")
    connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    if "upgrade" not in connection:
        raise web.HTTPBadRequest(text="a websocket is opened with Connection: Upgrade")
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        raise web.HTTPBadRequest(text="Sec-WebSocket-Version 13 only")
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise web.HTTPBadRequest(text="Sec-WebSocket-Key must be 16 bytes in base64")
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())


def switching(accept: bytes) -> bytes:
    """The 101 answer. No extension (no compression: every socket gets the same bytes) and
    no subprotocol."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %b\r\n\r\n" % accept
    )


async def take_over(request: web.Request, protocol: BrowserSocket) -> None:
    """Move the request's connection to ``protocol``, nothing written yet. Raises
    ConnectionResetError when the browser already left."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the browser left before its socket opened")
    if transport.get_extra_info("sslcontext") is not None:
        raise RuntimeError("websockets are served over plain HTTP: TLS ends at the proxy")
    transport.pause_reading()  # from now on, what the browser sends is read by ours only
    own = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    try:
        await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock=own)
    except BaseException:
        own.close()
        raise


class Upgraded(web.StreamResponse):
    """The handler's answer once the connection is ours: aiohttp writes nothing more, and
    closes its own transport (``force_close``)."""

    def __init__(self) -> None:
        super().__init__(status=101)
        self.force_close()

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None
