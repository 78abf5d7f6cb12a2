"""Runs renders in worker threads so the event loop never waits on numpy, OpenCV or ONNX Runtime.

A bounded count of queued frames answers RESOURCE_EXHAUSTED (OverloadedError) instead of letting
latency grow for everyone. Frames of concurrent calls for one model are micro-batched (see batching.py).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

from opentelemetry.trace import Tracer

from lipsync_server.batching import MicroBatcher, policy_for
from lipsync_server.errors import OverloadedError
from lipsync_server.registry import ReadyModel
from lipsync_server.render import RenderedFrame, RenderRequest, render
from lipsync_server.telemetry import MODEL, current_parent

T = TypeVar("T")


class InferenceRunner:
    def __init__(
        self,
        workers: int,
        max_queue: int,
        tracer: Tracer | None = None,
        *,
        max_batch: int = 1,
        batch_wait_ms: float = 0.0,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer")
        self._max_queue = max_queue
        self._queued = 0
        self._tracer = tracer
        self._batcher = MicroBatcher(
            self._executor,
            render,
            lambda engine: policy_for(engine, max_batch, batch_wait_ms / 1000.0, workers),
        )

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
        parent = current_parent(self._tracer, {MODEL: model.package.name})
        if parent is not None:
            requests = [replace(request, trace=parent) for request in requests]
        self._queued += count
        try:
            return await self._batcher.submit(model, requests)
        finally:
            self._queued -= count

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run any other blocking call (package loading, base-frame encoding) on the same workers."""
        loop = asyncio.get_running_loop()
        # The caller's context goes along, so that logs in the thread carry its trace and span ids.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, function, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
