"""Dynamic micro-batching: frames of concurrent requests and streams for one model, rendered together.

Every model has a lane: frames wait there until a batch leaves, as one `render` call in a worker
thread (a neural engine's batch spreads its per-frame work over the runner's frame threads). A batch
leaves when

- `max_batch` frames are waiting, or
- the oldest waiting frame has waited `wait_s` (`--batch-wait-ms`), or at once when `wait_s` is 0,

and fewer than `max_running` batches of the lane are running. While they all run, frames keep arriving
and the next batch is fuller: the busier the server, the larger its batches, and at low load a frame
waits at most `wait_s`.

Whether waiting pays depends on the engine (`policy_for`): one that runs a batch as one model call
(`batches_frames`, e.g. unet328: an H200 runs 8 frames in 4 times the time of one) waits for
company; one whose cost is per frame anyway (sprite: drawing, compositing and JPEG encoding) never
waits, and only takes what queued up while the workers were busy, saving thread hand-offs.

Everything here runs on the event loop and never blocks it; the bound on queued frames is the
caller's (InferenceRunner answers RESOURCE_EXHAUSTED before a frame gets here). A batch that fails is
retried one frame at a time, so that one bad request (an undecodable audio window, say) fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from lipsync_server.engines.base import Engine
from lipsync_server.packages.model import ModelPackage
from lipsync_server.registry import ReadyModel
from lipsync_server.render import RenderedFrame, RenderRequest

logger = logging.getLogger(__name__)

RenderBatch = Callable[[Engine, ModelPackage, Sequence[RenderRequest]], list[RenderedFrame]]
# Batches of a neural lane in flight at once: one on the device, the next one's inputs being assembled
# and the one before composited and encoded, so that the device always has a batch to start.
NEURAL_RUNNING = 3


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int
    # How long the oldest frame of a batch may wait for more, in seconds; 0: never wait.
    wait_s: float
    max_running: int

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_running < 1 or self.wait_s < 0:
            raise ValueError(f"invalid batch policy {self}")


def policy_for(engine: Engine, max_batch: int, wait_s: float, workers: int) -> BatchPolicy:
    """The policy of `engine`'s lanes: waiting and NEURAL_RUNNING batches in flight for engines that run
    a batch as one model call (`batches_frames`), no waiting and every worker for the others."""
    if engine.batches_frames:
        return BatchPolicy(max_batch, wait_s, min(NEURAL_RUNNING, workers))
    return BatchPolicy(max_batch, 0.0, workers)


@dataclass(eq=False)
class _Item:
    request: RenderRequest
    future: asyncio.Future[RenderedFrame]
    enqueued: float


@dataclass(eq=False)
class _Lane:
    model: ReadyModel
    policy: BatchPolicy
    pending: deque[_Item] = field(default_factory=deque)
    running: int = 0
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    """Collects frames per model and renders them in batches on `executor` (see the module docstring)."""

    def __init__(
        self, executor: Executor, render: RenderBatch, policy: Callable[[Engine], BatchPolicy]
    ) -> None:
        self._executor = executor
        self._render = render
        self._policy = policy
        self._lanes: dict[ModelPackage, _Lane] = {}

    async def submit(self, model: ReadyModel, requests: Sequence[RenderRequest]) -> list[RenderedFrame]:
        """Render `requests` of `model`, batched with other callers' frames; results in request order.

        Cancelling the caller withdraws its frames that have not started rendering.
        """
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(model.package)
        if lane is None:
            lane = self._lanes[model.package] = _Lane(model, self._policy(model.engine))
        now = loop.time()
        items = [_Item(request, loop.create_future(), now) for request in requests]
        lane.pending.extend(items)
        self._kick(lane)
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:
                item.future.cancel()

    def _kick(self, lane: _Lane) -> None:
        """Start every batch of `lane` that may start now; else arm the timer for the oldest frame."""
        loop = asyncio.get_running_loop()
        policy = lane.policy
        while lane.running < policy.max_running:
            while lane.pending and lane.pending[0].future.done():
                lane.pending.popleft()  # withdrawn by a cancelled caller
            if not lane.pending:
                break
            if policy.wait_s > 0 and len(lane.pending) < policy.max_batch:
                deadline = lane.pending[0].enqueued + policy.wait_s
                if loop.time() < deadline:
                    self._arm(lane, deadline)
                    return
            batch: list[_Item] = []
            while lane.pending and len(batch) < policy.max_batch:
                item = lane.pending.popleft()
                if not item.future.done():
                    batch.append(item)
            if batch:
                self._launch(lane, batch)
        if not lane.pending and lane.running == 0 and self._lanes.get(lane.model.package) is lane:
            if lane.timer is not None:
                lane.timer.cancel()
            del self._lanes[lane.model.package]

    def _arm(self, lane: _Lane, deadline: float) -> None:
        if lane.timer is not None:
            if lane.timer.when() <= deadline:
                return
            lane.timer.cancel()
        lane.timer = asyncio.get_running_loop().call_at(deadline, self._expired, lane)

    def _expired(self, lane: _Lane) -> None:
        lane.timer = None
        self._kick(lane)

    def _launch(self, lane: _Lane, batch: list[_Item]) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        lane.running += 1
        requests = [item.request for item in batch]
        model = lane.model
        loop = asyncio.get_running_loop()
        try:
            running = loop.run_in_executor(
                self._executor, self._render, model.engine, model.package, requests
            )
        except RuntimeError as exc:  # the executor is shut down: the server is stopping
            lane.running -= 1
            _fail(batch, exc)
            return
        running.add_done_callback(lambda done: self._finished(lane, batch, done))

    def _finished(self, lane: _Lane, batch: list[_Item], done: asyncio.Future[list[RenderedFrame]]) -> None:
        lane.running -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is None:
            for item, frame in zip(batch, done.result(), strict=True):
                if not item.future.done():
                    item.future.set_result(frame)
        elif len(batch) > 1 and not isinstance(error, asyncio.CancelledError):
            logger.info("a batch of %d frames failed (%s); rendering them one by one", len(batch), error)
            for item in batch:
                if not item.future.done():
                    self._launch(lane, [item])
            return
        else:
            _fail(batch, error)
        self._kick(lane)


def _fail(batch: Sequence[_Item], error: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            if isinstance(error, asyncio.CancelledError):
                item.future.cancel()
            else:
                item.future.set_exception(error)
