"""Freed memory goes back to the operating system: glibc's malloc told so at start-up.

glibc serves a large allocation with its own ``mmap`` (returned to the system when freed)
only above a threshold that starts at 128 KiB and *rises* to the size of each large block
freed, up to 32 MiB. After the first decoded image is freed, the next ones of under 32 MiB
(Pillow allocates pixels in blocks of up to 16 MiB) come from the heap and its per-thread
arenas, which keep them: a gateway that decoded PNGs in its two image threads stayed at
167 MB when they were done (18 MB before), and issue 21 saw ~700 MB stay. A fixed
threshold (``M_MMAP_THRESHOLD``) turns that rise off: every block of 1 MiB or more is
mapped and unmapped on its own, and the same run falls back to 18 MB. It costs a page
fault per 4 KiB of each new large block, microseconds per decoded image.

Elsewhere than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE = 2**20


def return_large_blocks(threshold: int = LARGE) -> bool:
    """Blocks of ``threshold`` bytes or more are mapped on their own, so freeing one gives
    it back to the system at once. False where this is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
