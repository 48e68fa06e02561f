"""RFC 6455 frames as bytes, built once and written to many sockets.

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
