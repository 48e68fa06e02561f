"""RFC 6455 frames as bytes, built once and written to many sockets (and the few control
frames a socket sends on its own: pong, ping, close).

aiohttp builds a frame per ``send_frame`` call, per socket, through two coroutines; a
broadcast to N sockets needs the same bytes N times. A server's frames are never masked
(RFC 6455 §5.1), so one text frame is valid on every uncompressed socket as it is.
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81  # FIN + opcode 1 (text)
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying ``payload`` (UTF-8 JSON here)."""
    size = len(payload)
    if size < 126:
        return _SHORT.pack(_TEXT_FIN, size) + payload
    if size < 65536:
        return _MEDIUM.pack(_TEXT_FIN, 126, size) + payload
    return _LONG.pack(_TEXT_FIN, 127, size) + payload


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A ping (0x9), pong (0xA) or close (0x8) frame: whole, at most 125 bytes of payload."""
    payload = payload[:125]
    return _SHORT.pack(0x80 | opcode, len(payload)) + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A close frame with its status code and a reason (cut to fit in 125 bytes)."""
    return control_frame(0x8, code.to_bytes(2, "big") + reason[:123])
