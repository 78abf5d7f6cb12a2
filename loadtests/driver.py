"""The closed-loop load driver shared by every client: C connections, D requests outstanding on each.

A client is a way to open *lanes* (a WebSocket, or a gRPC channel's calls). The driver opens C lanes,
runs D workers per lane (each sends a request, waits for its reply, sends the next), lets them warm up,
then measures for a duration or a count of replies: every reply's latency and size, every error's code,
and the CPU time of the processes it watches (the proxy, the backend, this client) over exactly the
measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from loadtests import procstat
from loadtests.progress import Progress
from loadtests.stats import CpuUse, RunResult, count_errors

#: Connection-level failures: the lane is gone, its workers stop.
CONNECTION_LOST = "CONNECTION_LOST"
#: A reply that is not what the protocol promises (e.g. a binary reply that is not a JPEG).
BAD_REPLY = "BAD_REPLY"


class RequestError(Exception):
    """A request got an error reply; `code` is the gRPC status name (or one of the codes above)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class LaneClosedError(RequestError):
    """The lane's connection is gone; no later request on it can succeed."""

    def __init__(self, message: str = "") -> None:
        super().__init__(CONNECTION_LOST, message)


class Lane(Protocol):
    """One connection of a client. Several workers may await `request` at once."""

    async def request(self, frame_id: int) -> int:
        """Ask for frame `frame_id`; the size of the reply's image in bytes.

        Raises RequestError with the error's code, LaneClosedError when the connection is gone."""
        ...

    async def close(self) -> None: ...


OpenLane = Callable[[], Awaitable[Lane]]


def abandon(waiter: asyncio.Future[int]) -> None:
    """Give up a reply nobody will await: cancel it, or take its exception so asyncio does not report
    it as never retrieved (a lane's reader may have failed it while its request was being sent)."""
    if not waiter.done():
        waiter.cancel()
    elif not waiter.cancelled():
        waiter.exception()


@dataclass(frozen=True)
class Plan:
    """How much load, for how long."""

    connections: int = 1
    depth: int = 1
    warmup_s: float = 1.0
    #: Measure this long, unless `count` is set.
    duration_s: float = 10.0
    #: Measure until this many replies (successes and errors) have come back.
    count: int | None = None
    #: Frame ids cycle through 0 … frames-1.
    frames: int = 300
    model: str = "demo"

    def __post_init__(self) -> None:
        if self.connections < 1 or self.depth < 1 or self.frames < 1:
            raise ValueError("connections, depth and frames must be at least 1")
        if self.warmup_s < 0 or self.duration_s <= 0 or (self.count is not None and self.count < 1):
            raise ValueError("the warm-up must be ≥ 0 s, the duration > 0 s and the count ≥ 1")


@dataclass(frozen=True)
class Watched:
    """A process whose CPU time is measured over the window, under a role name ("proxy", "backend")."""

    pid: int
    role: str


@dataclass
class Recorder:
    """What the workers report; only what completes while `measuring` counts."""

    measuring: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_received: int = 0
    target_count: int | None = None
    live_workers: int = 0
    #: Set when the count is reached or every worker has stopped (all lanes lost).
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def ok(self, latency_ms: float, size: int) -> None:
        if self.measuring:
            self.latencies_ms.append(latency_ms)
            self.bytes_received += size
            self._check_count()

    def error(self, code: str) -> None:
        if self.measuring:
            self.errors.append(code)
            self._check_count()

    def _check_count(self) -> None:
        if self.target_count is not None and len(self.latencies_ms) + len(self.errors) >= self.target_count:
            self.finished.set()

    def worker_stopped(self) -> None:
        self.live_workers -= 1
        if self.live_workers == 0:
            self.finished.set()


async def _work(lane: Lane, first_frame: int, frames: int, recorder: Recorder) -> None:
    frame_id = first_frame
    clock = time.perf_counter
    try:
        while True:
            start = clock()
            try:
                size = await lane.request(frame_id)
            except LaneClosedError:
                recorder.error(CONNECTION_LOST)
                return
            except RequestError as failure:
                recorder.error(failure.code)
            else:
                recorder.ok((clock() - start) * 1000.0, size)
            frame_id = (frame_id + 1) % frames
    finally:
        recorder.worker_stopped()


def _cpu_now(watched: Sequence[Watched]) -> dict[Watched, float]:
    return {w: procstat.cpu_times(w.pid).total_s for w in watched}


async def run_load(
    name: str,
    target: str,
    open_lane: OpenLane,
    plan: Plan,
    *,
    watch: Sequence[Watched] = (),
    progress: Progress | None = None,
    labels: Mapping[str, object] | None = None,
) -> RunResult:
    """Run `plan` against `target` with lanes from `open_lane`; the measured window's result.

    This process is watched too, under the role "client"."""
    lanes = await asyncio.gather(*(open_lane() for _ in range(plan.connections)))
    recorder = Recorder(target_count=plan.count, live_workers=plan.connections * plan.depth)
    watched = [*watch, Watched(os.getpid(), "client")]
    workers = [
        asyncio.create_task(_work(lane, (c * plan.depth + d) % plan.frames, plan.frames, recorder))
        for c, lane in enumerate(lanes)
        for d in range(plan.depth)
    ]
    try:
        await asyncio.sleep(plan.warmup_s)
        cpu_before = _cpu_now(watched)
        start = time.perf_counter()
        recorder.measuring = True
        await _measure(name, plan, recorder, start, progress)
        recorder.measuring = False
        wall_s = time.perf_counter() - start
        cpu_after = _cpu_now(watched)
    finally:
        for worker in workers:
            worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*workers, return_exceptions=True)
        await asyncio.gather(*(lane.close() for lane in lanes), return_exceptions=True)
        if progress is not None:
            progress.done()
    return RunResult(
        name=name,
        target=target,
        connections=plan.connections,
        depth=plan.depth,
        wall_s=wall_s,
        latencies_ms=recorder.latencies_ms,
        errors=count_errors(recorder.errors),
        bytes_received=recorder.bytes_received,
        cpu=[CpuUse(w.pid, w.role, cpu_after[w] - cpu_before[w]) for w in watched],
        labels={**(labels or {}), "load_average": procstat.load_average()},
    )


async def _measure(
    name: str, plan: Plan, recorder: Recorder, start: float, progress: Progress | None
) -> None:
    """Wait out the measured window: the duration, the count, or until every worker has stopped."""
    planned = None if plan.count is not None else plan.duration_s
    seen = 0
    while not recorder.finished.is_set():
        elapsed = time.perf_counter() - start
        left = None if plan.count is not None else plan.duration_s - elapsed
        if left is not None and left <= 0:
            return
        step = 1.0 if left is None else min(1.0, left)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.finished.wait(), timeout=step)
        if progress is not None:
            window = recorder.latencies_ms[seen:]
            seen = len(recorder.latencies_ms)
            progress.update(name, time.perf_counter() - start, planned, step, window, len(recorder.errors))
