"""Give the memory of a burst of frames back to the system once the proxy is idle again.

glibc keeps the heap memory it frees for later: after a burst of frames (batch replies, each frame's
copy, grpc's buffers) that is megabytes of resident memory a proxy whose connections now idle goes
on holding. 1,000 connections that had one frame each held 31 KiB each with it, 21.7 KiB after
`malloc_trim(0)` (docs/performance.md). So every `TRIM_INTERVAL_S`, if requests came in since the
last look and none is in flight now, the free heap pages go back. Where the C library has no
`malloc_trim` (musl, macOS) nothing happens.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from lipsync_proxy.state import ProxyState

TRIM_INTERVAL_S = 1.0

Trim = Callable[[int], object]

logger = logging.getLogger(__name__)


def malloc_trim() -> Trim | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_when_idle(state: ProxyState, trim: Trim | None, interval_s: float = TRIM_INTERVAL_S) -> None:
    """Run until cancelled: trim the heap each time the proxy has gone idle after serving requests."""
    if trim is None:
        logger.debug("no malloc_trim in this C library: freed memory stays with the process")
        return
    seen = state.requests
    while True:
        await asyncio.sleep(interval_s)
        if state.requests != seen and state.inflight == 0 and state.sessions == 0:
            seen = state.requests
            trim(0)
