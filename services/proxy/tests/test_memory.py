"""Trimming the heap once the proxy is idle after a burst (lipsync_proxy.memory)."""

from __future__ import annotations

import asyncio
from unittest.mock import MagicMock

from lipsync_common.waiting import eventually
from lipsync_proxy.memory import keep_freed_memory, malloc_trim, trim_when_idle
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.settings import Settings
from lipsync_proxy.state import ProxyState

INTERVAL = 0.2


def test_glibc_has_malloc_trim_and_takes_the_heap_settings() -> None:
    trim = malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
    assert keep_freed_memory()


async def test_the_heap_is_trimmed_once_a_whole_interval_passed_without_requests() -> None:
    state = ProxyState(Settings(static_dir=None), MagicMock(), Metrics())
    trims: list[int] = []
    task = asyncio.create_task(trim_when_idle(state, trims.append, interval_s=INTERVAL))

    async def intervals(count: int) -> None:
        await asyncio.sleep(INTERVAL * count + INTERVAL / 2)

    await intervals(3)
    assert trims == []  # nothing served yet
    state.admit()
    await intervals(3)
    assert trims == []  # a request in flight
    state.inflight -= 1
    await eventually(lambda: trims == [0], "one trim once idle after serving")
    await intervals(3)
    assert trims == [0]  # idle after serving: once
    for _ in range(50):  # a request every tenth of an interval: never idle for a whole one
        state.admit()
        state.inflight -= 1
        await asyncio.sleep(INTERVAL / 10)
    assert trims == [0]
    state.sessions = 1
    await intervals(3)
    assert trims == [0]  # a session is open
    state.sessions = 0
    await eventually(lambda: trims == [0, 0], "a trim once the session closed")
    task.cancel()


async def test_without_malloc_trim_nothing_runs() -> None:
    state = ProxyState(Settings(static_dir=None), MagicMock(), Metrics())
    await asyncio.wait_for(trim_when_idle(state, None, interval_s=0.01), 1)
