"""The proxy's use of the C library's heap: keep freed memory while busy, give it back once idle.

Every frame passes through a few large buffers (grpc's copy of a reply, up to `--max-batch` frames of
98 KB; each frame's copy). glibc's defaults hand such buffers back to the kernel as soon as they are
free (a dynamic mmap threshold, and trimming the top of the heap past 128 KiB), so the next ones are
fresh pages: page faults and zeroing on every batch. `keep_freed_memory` makes glibc keep them
(`mallopt`; docs/performance.md measures the saving). The price, memory kept after a burst, is paid
back by `trim_when_idle`: once requests have come and then none for a whole `TRIM_INTERVAL_S`,
`malloc_trim(0)` returns the free pages. Where the C library is not glibc (musl, macOS) neither does
anything.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from lipsync_proxy.state import ProxyState

TRIM_INTERVAL_S = 0.5
# mallopt's parameters (glibc's malloc.h) and the values the proxy sets.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
#: Buffers below this come from the heap, whatever was freed before (a fixed threshold also turns off
#: glibc's adjusting of it): a batch of 16 frames is 1.6 MB.
MMAP_THRESHOLD = 4 << 20
#: The heap is never trimmed on the fly (trim_when_idle does it once idle) and grows 16 MiB at a time.
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 16 << 20

Trim = Callable[[int], object]

logger = logging.getLogger(__name__)


def _libc_function(name: str) -> Callable[..., object] | None:
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function: Callable[..., object] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    return function


def malloc_trim() -> Trim | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    return _libc_function("malloc_trim")


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed buffers for reuse (see the module's docstring); False where it cannot."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)


async def trim_when_idle(state: ProxyState, trim: Trim | None, interval_s: float = TRIM_INTERVAL_S) -> None:
    """Run until cancelled: trim the heap once the proxy has had no request for a whole interval after
    serving some. Never while requests keep coming, however few: a trim of a large heap takes
    milliseconds, and one between two requests of a single client showed in its p99 latency."""
    if trim is None:
        logger.debug("no malloc_trim in this C library: freed memory stays with the process")
        return
    seen = trimmed = state.requests
    while True:
        await asyncio.sleep(interval_s)
        now = state.requests
        if now == seen != trimmed and state.inflight == 0 and state.sessions == 0:
            trim(0)
            trimmed = now
        seen = now
