"""Waiting, in the tests of every package, for what another task, thread or process does.

A test reads a metric, a log line or a file only once the thing it checks has surely happened: it waits
for it with `eventually` (async tests) or `wait_until` (tests driving blocking clients), never with a
fixed sleep. Every bound is a multiple of one unit, `TIME_UNIT`: raise LIPSYNC_TEST_TIME_UNIT on a slow
machine and every test waits that much longer.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable

TIME_UNIT = float(os.environ.get("LIPSYNC_TEST_TIME_UNIT", "1"))
POLL_S = 0.01


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within_s: float = 3.0
) -> None:
    """Return once `condition()` (a coroutine function too) holds; fail naming `what` if it does not
    within `within_s` × TIME_UNIT seconds, looking every 10 ms."""
    deadline = time.monotonic() + within_s * TIME_UNIT
    while not await _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {within_s * TIME_UNIT:.1f} s")
        await asyncio.sleep(POLL_S)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    held = condition()
    return bool(await held) if inspect.isawaitable(held) else bool(held)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once `condition()` holds; fail naming `what` if it does not within `timeout` seconds (the
    caller scales it by TIME_UNIT), looking every 10 ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:.1f} s")
        time.sleep(POLL_S)
