"""The global in-flight cap: admission decided in read order, seen by each request's own task."""

from __future__ import annotations

import asyncio
from typing import cast

from lipsync_proxy.backend import BackendClient
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.settings import Settings
from lipsync_proxy.state import ProxyState


def state_with_cap(cap: int) -> ProxyState:
    # The cap never calls the backend.
    return ProxyState(Settings(max_inflight=1, max_inflight_total=cap), cast(BackendClient, None), Metrics())


async def test_a_burst_larger_than_the_cap_is_cut_at_the_cap_in_read_order() -> None:
    state = state_with_cap(3)
    seen: list[bool] = []

    async def request() -> None:
        seen.append(state.overloaded)

    tasks = []
    for _ in range(5):
        # As the connection handler does: admit when read, then make the request's task.
        state.admit()
        tasks.append(asyncio.ensure_future(request()))
    await asyncio.gather(*tasks)

    # Until this was fixed, each task compared the whole burst (5) with the cap: all five refused.
    assert seen == [False, False, False, True, True]
    assert state.inflight == 5


async def test_a_request_read_once_others_finished_is_admitted_again() -> None:
    state = state_with_cap(1)

    async def overloaded() -> bool:
        return state.overloaded

    state.admit()
    assert not await asyncio.ensure_future(overloaded())
    state.admit()
    assert await asyncio.ensure_future(overloaded())
    state.inflight -= 2
    state.admit()
    assert not await asyncio.ensure_future(overloaded())
