"""The viewers scenario: users watching at 25 FPS, added step by step until p99 latency passes 100 ms.

    python -m loadtests.viewers --url ws://127.0.0.1:8086/ws      # viewers through a proxy
    python -m loadtests.viewers --addr 127.0.0.1:50051            # viewers calling a server directly
        [--start 5] [--step 5] [--step-seconds 5] [--max 400] [--fps 25] [--threshold-ms 100] [--json F]

A viewer is one connection playing a video: every 1/fps seconds it asks for the next frame, whether
or not the previous one has arrived (a player keeps its clock), with at most 8 requests outstanding; a
tick that finds 8 outstanding is a *late* frame (the player would stutter). Each step adds viewers,
lets them settle, then measures. A step *holds* when its p99 latency is below the threshold, no
request failed and no frame was late; one that does not is measured once more before the ramp stops
(`--retries`). The capacity is the viewer count of the last step that held
before the first that did not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from loadtests.direct import DirectClient
from loadtests.driver import Lane, LaneClosedError, OpenLane, RequestError
from loadtests.progress import Progress
from loadtests.stats import LatencySummary
from loadtests.wsload import lane_opener


@dataclass(frozen=True)
class Ramp:
    """How viewers are added and what counts as holding."""

    start: int = 5
    step: int = 5
    step_s: float = 5.0
    settle_s: float = 1.0
    max_viewers: int = 400
    fps: float = 25.0
    threshold_ms: float = 100.0
    max_outstanding: int = 8
    #: Times a step that did not hold is measured again before the ramp stops.
    retries: int = 1
    frames: int = 300
    model: str = "demo"

    def __post_init__(self) -> None:
        if min(self.start, self.step, self.max_viewers, self.max_outstanding) < 1 or self.retries < 0:
            raise ValueError("start, step, max viewers and max outstanding must be at least 1, retries ≥ 0")
        if self.step_s <= 0 or self.settle_s < 0 or self.fps <= 0 or self.threshold_ms <= 0:
            raise ValueError("step time, fps and threshold must be positive, settle time not negative")


@dataclass(frozen=True)
class StepResult:
    viewers: int
    frames: int
    late: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    frames_per_s: float
    #: 1, or more when the step was measured again after it did not hold.
    attempt: int = 1
    #: CPU seconds per second the watched process used over the step (cores busy); None unwatched.
    cores_busy: float | None = None

    def holds(self, threshold_ms: float) -> bool:
        return self.frames > 0 and self.errors == 0 and self.late == 0 and self.p99_ms < threshold_ms


def capacity(steps: Sequence[StepResult], threshold_ms: float) -> int:
    """Viewers of the last step that held before the first that did not (0 if the first did not)."""
    held = 0
    for step in steps:
        if not step.holds(threshold_ms):
            break
        held = step.viewers
    return held


@dataclass
class _Window:
    """What the viewers report; only while `measuring`."""

    measuring: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    late: int = 0
    errors: int = 0


class Viewer:
    """One connection playing frames at `fps` from frame `first`."""

    def __init__(self, lane: Lane, ramp: Ramp, first: int, window: _Window) -> None:
        self._lane = lane
        self._ramp = ramp
        self._frame = first
        self._window = window
        self._outstanding: set[asyncio.Task[None]] = set()
        self._closed = False
        self.player = asyncio.create_task(self._play())

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self._ramp.fps
        tick = loop.time()
        while not self._closed:
            tick += period
            await asyncio.sleep(max(0.0, tick - loop.time()))
            if len(self._outstanding) >= self._ramp.max_outstanding:
                if self._window.measuring:
                    self._window.late += 1
                continue
            task = asyncio.create_task(self._fetch(self._frame))
            self._outstanding.add(task)
            task.add_done_callback(self._outstanding.discard)
            self._frame = (self._frame + 1) % self._ramp.frames

    async def _fetch(self, frame_id: int) -> None:
        start = time.perf_counter()
        try:
            await self._lane.request(frame_id)
        except LaneClosedError:
            self._closed = True
            if self._window.measuring:
                self._window.errors += 1
        except RequestError:
            if self._window.measuring:
                self._window.errors += 1
        else:
            if self._window.measuring:
                self._window.latencies_ms.append((time.perf_counter() - start) * 1000.0)

    async def close(self) -> None:
        self._closed = True
        tasks = [self.player, *self._outstanding]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._lane.close()


#: The CPU seconds a watched process has used so far (e.g. the server's, from /proc).
CpuClock = Callable[[], float]


async def _measure_step(
    viewers: int, window: _Window, ramp: Ramp, attempt: int, cpu: CpuClock | None
) -> StepResult:
    """Let the viewers settle, then measure them for one step."""
    await asyncio.sleep(ramp.settle_s)
    window.latencies_ms, window.late, window.errors = [], 0, 0
    window.measuring = True
    cpu_start = cpu() if cpu is not None else 0.0
    await asyncio.sleep(ramp.step_s)
    window.measuring = False
    cores_busy = (cpu() - cpu_start) / ramp.step_s if cpu is not None else None
    latency = LatencySummary.of(window.latencies_ms)
    return StepResult(
        viewers,
        len(window.latencies_ms),
        window.late,
        window.errors,
        latency.p50,
        latency.p99,
        latency.max,
        len(window.latencies_ms) / ramp.step_s,
        attempt,
        cores_busy,
    )


async def ramp_viewers(
    open_lane: OpenLane, ramp: Ramp, progress: Progress | None = None, cpu: CpuClock | None = None
) -> list[StepResult]:
    """Add viewers step by step until a step does not hold (or `max_viewers`); every step's result,
    with the cores `cpu`'s process kept busy when given.

    A step that does not hold is measured again, up to `ramp.retries` times, before the ramp stops: on a
    shared machine one hiccup of another process can spoil a p99 of a few hundred frames."""
    window = _Window()
    viewers: list[Viewer] = []
    steps: list[StepResult] = []
    try:
        count = ramp.start
        while count <= ramp.max_viewers:
            lanes = await asyncio.gather(*(open_lane() for _ in range(count - len(viewers))))
            viewers += [
                Viewer(lane, ramp, (len(viewers) + i) * 37 % ramp.frames, window)
                for i, lane in enumerate(lanes)
            ]
            for attempt in range(1, ramp.retries + 2):
                step = await _measure_step(count, window, ramp, attempt, cpu)
                if progress is not None:
                    name = f"{count} viewers" + (f" (again, {attempt})" if attempt > 1 else "")
                    progress.update(name, ramp.step_s, None, ramp.step_s, window.latencies_ms, step.errors)
                if step.holds(ramp.threshold_ms):
                    break
            steps.append(step)
            if not step.holds(ramp.threshold_ms):
                break
            count += ramp.step
    finally:
        await asyncio.gather(*(viewer.close() for viewer in viewers), return_exceptions=True)
        if progress is not None:
            progress.done()
    return steps


async def viewers_through_proxy(url: str, ramp: Ramp, progress: Progress | None = None) -> list[StepResult]:
    """Viewers on v1 WebSockets (the seed's client) through the proxy at `url`."""
    return await ramp_viewers(lane_opener(url, "v1", ramp.model), ramp, progress)


async def viewers_direct(
    address: str, ramp: Ramp, progress: Progress | None = None, cpu: CpuClock | None = None
) -> list[StepResult]:
    """Viewers calling the gRPC server at `address` themselves, one `Infer` per frame."""
    client = DirectClient(address, ramp.model)
    try:
        await client.channel.channel_ready()
        return await ramp_viewers(client.opener("unary"), ramp, progress, cpu)
    finally:
        await client.close()


def summary(steps: Sequence[StepResult], ramp: Ramp) -> dict[str, object]:
    return {
        "capacity_viewers": capacity(steps, ramp.threshold_ms),
        "ramp": asdict(ramp),
        "steps": [
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(s).items()}
            | {"holds": s.holds(ramp.threshold_ms)}
            for s in steps
        ],
    }


def add_ramp_arguments(
    parser: argparse.ArgumentParser, start: int = Ramp.start, step: int = Ramp.step
) -> None:
    """The flags of a ramp's steps and threshold (`ramp_from_args` reads them)."""
    add = parser.add_argument
    add("--start", type=int, default=start)
    add("--step", type=int, default=step)
    add("--step-seconds", type=float, default=Ramp.step_s)
    add("--settle-seconds", type=float, default=Ramp.settle_s)
    add("--max", type=int, default=Ramp.max_viewers)
    add("--fps", type=float, default=Ramp.fps)
    add("--threshold-ms", type=float, default=Ramp.threshold_ms)


def ramp_from_args(args: argparse.Namespace, **fields: Any) -> Ramp:
    """The ramp of `add_ramp_arguments`' flags, with `fields` for the rest."""
    return Ramp(
        start=args.start,
        step=args.step,
        step_s=args.step_seconds,
        settle_s=args.settle_seconds,
        max_viewers=args.max,
        fps=args.fps,
        threshold_ms=args.threshold_ms,
        **fields,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="How many 25 FPS viewers a proxy or a server holds.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a proxy's WebSocket URL (viewers speak v1)")
    target.add_argument("--addr", help="a lipsync-server's gRPC address (viewers call Infer)")
    add_ramp_arguments(parser)
    add = parser.add_argument
    add("--retries", type=int, default=Ramp.retries, help="measure a step that failed again (default 1)")
    add("--model", default=Ramp.model)
    add("--frames", type=int, default=Ramp.frames)
    add("--json", type=Path, default=None, help="write the result here ('-' for stdout)")
    args = parser.parse_args(argv)
    ramp = ramp_from_args(args, retries=args.retries, frames=args.frames, model=args.model)
    progress = Progress(every_s=0.0)
    if args.url:
        steps = uvloop.run(viewers_through_proxy(args.url, ramp, progress))
    else:
        steps = uvloop.run(viewers_direct(args.addr, ramp, progress))
    text = json.dumps(summary(steps, ramp), indent=2) + "\n"
    if args.json is None or str(args.json) == "-":
        sys.stdout.write(text)
    else:
        args.json.write_text(text)
    sys.stderr.write(
        f"capacity: {capacity(steps, ramp.threshold_ms)} viewers at p99 < {ramp.threshold_ms:g} ms\n"
    )


if __name__ == "__main__":
    main()
