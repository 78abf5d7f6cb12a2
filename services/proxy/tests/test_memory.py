"""Trimming the heap once the proxy is idle after a burst (lipsync_proxy.memory)."""

from __future__ import annotations

import asyncio
from unittest.mock import MagicMock

from lipsync_proxy.memory import malloc_trim, trim_when_idle
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.settings import Settings
from lipsync_proxy.state import ProxyState


def test_glibc_has_malloc_trim() -> None:
    trim = malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)


async def test_the_heap_is_trimmed_once_after_requests_when_nothing_is_in_flight() -> None:
    state = ProxyState(Settings(static_dir=None), MagicMock(), Metrics())
    trims: list[int] = []
    task = asyncio.create_task(trim_when_idle(state, trims.append, interval_s=0.01))
    await asyncio.sleep(0.05)
    assert trims == []  # nothing served yet
    state.admit()
    await asyncio.sleep(0.05)
    assert trims == []  # a request in flight
    state.inflight -= 1
    await asyncio.sleep(0.05)
    assert trims == [0]  # idle after serving: once
    state.admit()
    state.inflight -= 1
    state.sessions = 1
    await asyncio.sleep(0.05)
    assert trims == [0]  # a session is open
    state.sessions = 0
    await asyncio.sleep(0.05)
    assert trims == [0, 0]
    task.cancel()


async def test_without_malloc_trim_nothing_runs() -> None:
    state = ProxyState(Settings(static_dir=None), MagicMock(), Metrics())
    await asyncio.wait_for(trim_when_idle(state, None, interval_s=0.01), 1)
