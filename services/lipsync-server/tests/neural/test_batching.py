"""Micro-batching of concurrent frames: when batches leave, how large they get, and what never happens
(blocking the loop, one bad frame failing the others, rendering frames nobody waits for)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from doubles import PaintEngineDouble, tiny_package
from server_process import TIME_UNIT

from lipsync_server.batching import BatchPolicy, MicroBatcher, policy_for
from lipsync_server.engines.base import Engine, FrameJob, FrameMap, serial_map
from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.engines.unet328 import Unet328Engine
from lipsync_server.errors import InvalidArgumentError, OverloadedError
from lipsync_server.inference import FramePool, InferenceRunner
from lipsync_server.packages.model import ModelPackage
from lipsync_server.registry import ReadyModel
from lipsync_server.render import RenderedFrame, RenderRequest, StageTimings

BAD_FRAME = 13


@dataclass
class RecordingRender:
    """Renders a batch in `seconds`, recording its frame ids; a batch holding BAD_FRAME fails."""

    seconds: float = 0.0
    batches: list[list[int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, engine: Engine, package: ModelPackage, requests: Sequence[RenderRequest]
    ) -> list[RenderedFrame]:
        ids = [request.frame_id for request in requests]
        with self.lock:
            self.batches.append(ids)
        time.sleep(self.seconds)
        if BAD_FRAME in ids:
            raise InvalidArgumentError(f"frame {BAD_FRAME} is bad")
        timings = StageTimings(0.0, 0.0, 0.0, 0.0, len(ids))
        return [RenderedFrame(str(i).encode(), 0, 0, (0, 0, 0, 0), timings) for i in ids]


@dataclass
class NeuralEngineDouble(PaintEngineDouble):
    batches_frames: bool = True


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


def model(engine: Engine | None = None) -> ReadyModel:
    return ReadyModel(tiny_package(frames=20), engine or NeuralEngineDouble())


def batcher(
    executor: ThreadPoolExecutor, render: RecordingRender, max_batch: int, wait_s: float, running: int = 2
) -> MicroBatcher:
    return MicroBatcher(executor, render, lambda engine: policy_for(engine, max_batch, wait_s, running))


async def frame(batcher: MicroBatcher, ready: ReadyModel, frame_id: int) -> int:
    (rendered,) = await batcher.submit(ready, [RenderRequest(frame_id)])
    return int(rendered.image)


def test_engines_that_batch_wait_for_company_and_others_never_wait() -> None:
    assert policy_for(NeuralEngineDouble(), 8, 0.002, 4) == BatchPolicy(8, 0.002, 3)
    assert policy_for(PaintEngineDouble(), 8, 0.002, 4) == BatchPolicy(8, 0.0, 4)
    assert policy_for(Unet328Engine("cpu"), 8, 0.002, 1) == BatchPolicy(8, 0.002, 1)
    assert policy_for(SpriteEngine(), 8, 0.002, 4) == BatchPolicy(8, 0.0, 4)
    with pytest.raises(ValueError, match="invalid batch policy"):
        BatchPolicy(0, 0.0, 1)


async def test_concurrent_frames_within_the_wait_leave_as_one_batch(executor: ThreadPoolExecutor) -> None:
    render = RecordingRender()
    micro = batcher(executor, render, max_batch=8, wait_s=0.2)
    ready = model()
    results = await asyncio.gather(*(frame(micro, ready, i) for i in range(5)))
    assert results == [0, 1, 2, 3, 4], "each caller gets its own frame"
    assert render.batches == [[0, 1, 2, 3, 4]]


async def test_a_full_batch_leaves_without_waiting(executor: ThreadPoolExecutor) -> None:
    render = RecordingRender()
    micro = batcher(executor, render, max_batch=4, wait_s=30.0)
    ready = model()
    started = time.monotonic()
    results = await asyncio.gather(*(frame(micro, ready, i) for i in range(8)))
    assert time.monotonic() - started < 10.0, "two full batches need no timer"
    assert results == list(range(8))
    assert sorted(render.batches) == [[0, 1, 2, 3], [4, 5, 6, 7]]


async def test_a_lone_frame_waits_at_most_the_batch_wait(executor: ThreadPoolExecutor) -> None:
    render = RecordingRender()
    micro = batcher(executor, render, max_batch=8, wait_s=0.05)
    started = time.monotonic()
    assert await frame(micro, model(), 3) == 3
    assert 0.05 <= time.monotonic() - started < 2.0


async def test_an_engine_that_does_not_batch_takes_what_queued_while_the_workers_were_busy(
    executor: ThreadPoolExecutor,
) -> None:
    render = RecordingRender(seconds=0.2)
    micro = batcher(executor, render, max_batch=8, wait_s=30.0, running=1)
    ready = model(PaintEngineDouble())
    results = await asyncio.gather(*(frame(micro, ready, i) for i in range(10)))
    assert results == list(range(10))
    assert render.batches == [[0], [1, 2, 3, 4, 5, 6, 7, 8], [9]], "no waiting, no batch above the cap"


async def test_one_bad_frame_fails_alone_and_the_rest_of_its_batch_succeeds(
    executor: ThreadPoolExecutor,
) -> None:
    render = RecordingRender()
    micro = batcher(executor, render, max_batch=8, wait_s=0.2)
    ready = model()
    results = await asyncio.gather(
        *(frame(micro, ready, i) for i in (11, 12, BAD_FRAME, 14)), return_exceptions=True
    )
    assert results[:2] == [11, 12]
    assert results[3] == 14
    assert isinstance(results[2], InvalidArgumentError)
    assert render.batches[0] == [11, 12, BAD_FRAME, 14]
    assert sorted(render.batches[1:]) == [[11], [12], [BAD_FRAME], [14]]


async def test_a_cancelled_caller_is_withdrawn_before_its_frame_renders(executor: ThreadPoolExecutor) -> None:
    render = RecordingRender()
    micro = batcher(executor, render, max_batch=8, wait_s=0.3)
    ready = model()
    waiting = asyncio.create_task(frame(micro, ready, 1))
    await asyncio.sleep(0)  # one turn of the loop: the frame is queued, waiting 0.3 s for company
    waiting.cancel()
    assert await frame(micro, ready, 2) == 2
    assert render.batches == [[2]]


async def test_rendering_never_blocks_the_event_loop(executor: ThreadPoolExecutor) -> None:
    render = RecordingRender(seconds=0.3)
    micro = batcher(executor, render, max_batch=8, wait_s=0.0)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    await asyncio.gather(*(frame(micro, model(), i) for i in range(4)))
    beat.cancel()
    assert ticks >= 10, "the loop kept running while frames rendered"


async def test_frames_beyond_the_queue_bound_are_refused_as_overload() -> None:
    runner = InferenceRunner(1, 3, max_batch=8, batch_wait_ms=100.0)
    ready = ReadyModel(tiny_package(), NeuralEngineDouble())
    try:
        results = await asyncio.gather(
            *(runner.render(ready, [RenderRequest(i % 4)]) for i in range(5)), return_exceptions=True
        )
    finally:
        runner.shutdown()
    assert [type(r).__name__ for r in results].count("OverloadedError") == 2
    frames = [r for r in results if not isinstance(r, OverloadedError)]
    assert [f[0].timings.batch_size for f in frames] == [3, 3, 3], "the accepted frames ran as one batch"


# Long enough for a loaded machine to start the threads; a serial map never gets past the barrier.
BARRIER_S = 30.0 * TIME_UNIT


def test_a_frame_pool_runs_a_batchs_chunks_at_once_and_keeps_their_order() -> None:
    pool = FramePool(4)
    barrier = threading.Barrier(4, timeout=BARRIER_S)
    threads: set[str] = set()

    def work(item: int) -> int:
        threads.add(threading.current_thread().name)
        if item % 2 == 0:
            barrier.wait()  # the first frame of each chunk of two: four chunks running at once
        return item * 10

    try:
        assert pool.map(work, list(range(8))) == [i * 10 for i in range(8)]
        assert pool.map(work, [5]) == [50], "a lone frame stays in the calling thread"
    finally:
        pool.shutdown()
    assert len(threads) == 4, "the caller and three frame threads"


def test_a_failing_frame_fails_its_batch_after_every_chunk_has_finished() -> None:
    pool = FramePool(3)
    finished: list[int] = []

    def work(item: int) -> int:
        if item == 0:
            raise InvalidArgumentError("frame 0 is bad")
        time.sleep(0.05)  # the other chunks are still running when the first one fails
        finished.append(item)
        return item

    try:
        with pytest.raises(InvalidArgumentError, match="frame 0 is bad"):
            pool.map(work, list(range(6)))
    finally:
        pool.shutdown()
    assert sorted(finished) == [2, 3, 4, 5]


def test_a_batch_never_waits_for_a_busy_frame_thread_its_caller_runs_the_chunks_itself() -> None:
    pool = FramePool(2)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def block(item: int) -> int:
        entered.release()
        release.wait(BARRIER_S)
        return item

    # Two batches whose chunks hold both frame threads (and their own callers).
    blockers = [threading.Thread(target=pool.map, args=(block, [0, 1])) for _ in range(2)]
    for blocker in blockers:
        blocker.start()
    try:
        for _ in range(4):
            assert entered.acquire(timeout=BARRIER_S)
        threads: list[str] = []

        def work(item: int) -> int:
            threads.append(threading.current_thread().name)
            return item + 1

        assert pool.map(work, [1, 2, 3, 4]) == [2, 3, 4, 5]
        assert set(threads) == {threading.current_thread().name}
    finally:
        release.set()
        for blocker in blockers:
            blocker.join()
        pool.shutdown()


@dataclass
class ThreadRecordingEngineDouble(NeuralEngineDouble):
    """Records the thread that painted each frame; with `together`, the even frames wait until that
    many of them are being painted at once."""

    threads: list[str] = field(default_factory=list)
    together: int = 0

    def infer(
        self, package: ModelPackage, jobs: Sequence[FrameJob], map_frames: FrameMap = serial_map
    ) -> list[np.ndarray]:
        barrier = threading.Barrier(self.together, timeout=BARRIER_S) if self.together else None

        def paint(job: FrameJob) -> np.ndarray:
            self.threads.append(threading.current_thread().name)
            if barrier is not None and job.frame_id % 2 == 0:
                barrier.wait()
            x1, y1, x2, y2 = (int(v) for v in package.boxes[job.frame_id])
            return np.full((y2 - y1, x2 - x1, 3), 255, np.uint8)

        return map_frames(paint, jobs)


@pytest.mark.parametrize(("batches_frames", "threads"), [(True, 4), (False, 1)])
async def test_a_neural_batch_spreads_its_frames_over_the_runners_threads_and_a_sprite_batch_does_not(
    batches_frames: bool, threads: int
) -> None:
    # Neural: four chunks of two frames, painted at once (or the barrier breaks).
    engine = ThreadRecordingEngineDouble(
        batches_frames=batches_frames, together=threads if threads > 1 else 0
    )
    runner = InferenceRunner(4, 64, max_batch=8, batch_wait_ms=0.0)
    try:
        frames = await runner.render(
            ReadyModel(tiny_package(frames=20), engine), [RenderRequest(i) for i in range(8)]
        )
    finally:
        runner.shutdown()
    assert [f.timings.batch_size for f in frames] == [8] * 8, "one batch"
    assert len(engine.threads) == 8
    assert len(set(engine.threads)) == threads
