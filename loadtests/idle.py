"""What idle WebSocket connections cost the proxy in memory.

Opens N connections to the proxy (optionally one frame on each first, so every connection has been
used once, as a viewer's is), waits, and reads the proxy's resident memory before and after from /proc.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from loadtests import procstat
from loadtests.driver import Lane
from loadtests.wsload import V1Lane

#: Connections opened at once; more only makes the kernel's accept queue overflow.
OPENING_AT_ONCE = 50


@dataclass(frozen=True)
class IdleResult:
    connections: int
    frames_each: int
    rss_before_kib: int
    rss_after_kib: int
    load_average: tuple[float, float, float]

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connections


async def idle_connections(
    url: str,
    proxy_pid: int,
    count: int = 1000,
    frames_each: int = 0,
    settle_s: float = 2.0,
    model: str = "demo",
) -> IdleResult:
    """Open `count` v1 connections to the proxy at `url`, each asking for `frames_each` frames, and
    measure the proxy's RSS before and after `settle_s` of them idling."""
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    lanes: list[Lane] = []

    async def open_one(index: int) -> None:
        async with gate:
            lane = await V1Lane.open(url, model)
            lanes.append(lane)
            for frame in range(frames_each):
                await lane.request((index + frame) % 300)

    before = procstat.rss_kib(proxy_pid)
    try:
        await asyncio.gather(*(open_one(i) for i in range(count)))
        await asyncio.sleep(settle_s)
        after = procstat.rss_kib(proxy_pid)
    finally:
        await asyncio.gather(*(lane.close() for lane in lanes), return_exceptions=True)
    return IdleResult(count, frames_each, before, after, procstat.load_average())
