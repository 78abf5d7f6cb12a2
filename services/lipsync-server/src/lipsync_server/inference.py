"""Runs renders in worker threads so the event loop never waits on numpy, OpenCV or ONNX Runtime.

A bounded count of queued frames answers RESOURCE_EXHAUSTED (OverloadedError) instead of letting
latency grow for everyone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lipsync_server.errors import OverloadedError
from lipsync_server.registry import ReadyModel
from lipsync_server.render import RenderedFrame, RenderRequest, render

T = TypeVar("T")


class InferenceRunner:
    def __init__(self, workers: int, max_queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer")
        self._max_queue = max_queue
        self._queued = 0

    @property
    def queued(self) -> int:
        """Frames accepted and not finished yet."""
        return self._queued

    async def render(self, model: ReadyModel, requests: Sequence[RenderRequest]) -> list[RenderedFrame]:
        count = len(requests)
        if self._queued + count > self._max_queue:
            raise OverloadedError(
                f"server busy: {self._queued} frames queued (limit {self._max_queue}); retry with backoff"
            )
        self._queued += count
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, render, model.engine, model.package, requests)
        finally:
            self._queued -= count

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run any other blocking call (package loading, base-frame encoding) on the same workers."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
