"""Runs renders in worker threads so the event loop never waits on numpy, OpenCV or ONNX Runtime.

A bounded count of queued frames answers RESOURCE_EXHAUSTED (OverloadedError) instead of letting
latency grow for everyone. Frames of concurrent calls for one model are micro-batched (see batching.py).

A batch of a neural engine runs in one worker thread, but its per-frame work (audio features, crop and
model input, face region, composite and JPEG) is spread over a second pool of as many threads
(`FramePool`): done frame after frame in the batch's thread, it would leave a GPU waiting. OpenCV's resizing
and JPEG encoding and numpy's array arithmetic release the GIL, so the frames do run at once. The
sprite engine's batches stay in one thread each: a sprite frame costs less than handing it over, and
its lanes already run a batch per worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Generic, TypeVar

from opentelemetry.trace import Tracer

from lipsync_server.batching import MicroBatcher, policy_for
from lipsync_server.engines.base import Engine
from lipsync_server.errors import OverloadedError
from lipsync_server.packages.model import ModelPackage
from lipsync_server.registry import ReadyModel
from lipsync_server.render import RenderedFrame, RenderRequest, render
from lipsync_server.telemetry import MODEL, current_parent

T = TypeVar("T")
R = TypeVar("R")


class FramePool:
    """Maps a function over the frames of a batch on up to `threads` threads at once.

    The items are cut into one contiguous chunk per thread (at most). Each chunk is offered to the
    pool, and the calling thread then runs every chunk no pool thread has started yet, so a batch never
    waits for a thread to be scheduled: on a busy machine it runs as it would have frame after frame,
    and on idle cores its chunks run at once. The caller waits only for chunks other threads started.
    Functions must not wait on other frames' work.
    """

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="frame")

    def map(self, function: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        count = min(len(items), self._threads)
        if count <= 1:
            return [function(item) for item in items]
        bounds = [len(items) * k // count for k in range(count + 1)]
        chunks = [_Chunk(function, items[bounds[k] : bounds[k + 1]]) for k in range(count)]
        for chunk in chunks[1:]:
            self._executor.submit(chunk.run)
        for chunk in chunks:
            chunk.run()
        # Every chunk has finished before a failing one fails the batch (which is then retried).
        for chunk in chunks:
            chunk.wait()
        results: list[R] = []
        for chunk in chunks:
            results += chunk.result()
        return results

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Chunk(Generic[T, R]):
    """Consecutive frames of a batch, run by whichever thread claims them first."""

    def __init__(self, function: Callable[[T], R], items: Sequence[T]) -> None:
        self._function = function
        self._items = items
        self._claim = threading.Lock()
        self._done = threading.Event()
        self._results: list[R] = []
        self._error: BaseException | None = None

    def run(self) -> None:
        if not self._claim.acquire(blocking=False):
            return  # another thread has it
        try:
            self._results = [self._function(item) for item in self._items]
        except BaseException as error:
            self._error = error
        finally:
            self._done.set()

    def wait(self) -> None:
        self._done.wait()

    def result(self) -> list[R]:
        """The chunk's results once it has run; its error when it failed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._results


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
        self._frames = FramePool(workers)
        self._max_queue = max_queue
        self._queued = 0
        self._tracer = tracer
        self._batcher = MicroBatcher(
            self._executor,
            self._render,
            lambda engine: policy_for(engine, max_batch, batch_wait_ms / 1000.0, workers),
        )

    @property
    def queued(self) -> int:
        """Frames accepted and not finished yet."""
        return self._queued

    def _render(
        self, engine: Engine, package: ModelPackage, requests: Sequence[RenderRequest]
    ) -> list[RenderedFrame]:
        if engine.batches_frames:
            return render(engine, package, requests, self._frames.map)
        return render(engine, package, requests)

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
        self._frames.shutdown()
