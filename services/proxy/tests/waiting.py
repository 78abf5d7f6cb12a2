"""Waiting in async tests for something another task or process does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .processes import TIME_UNIT


async def eventually(condition: Callable[[], bool], what: str, within_s: float = 3.0) -> None:
    """Return once `condition()` holds; fail naming `what` if it does not within `within_s` (scaled by
    TIME_UNIT), looking every 10 ms."""
    for _ in range(int(within_s * 100 * TIME_UNIT)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not within {within_s * TIME_UNIT:.0f} s")
