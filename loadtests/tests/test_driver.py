from __future__ import annotations

import asyncio
import os

import pytest

from loadtests.driver import LaneClosedError, Plan, RequestError, Watched, run_load

from .doubles import InstantLane, size_for


async def test_a_counted_run_measures_at_least_that_many_replies_after_the_warm_up() -> None:
    lanes: list[InstantLane] = []

    async def open_lane() -> InstantLane:
        lanes.append(InstantLane())
        return lanes[-1]

    plan = Plan(connections=3, depth=2, warmup_s=0.05, count=200, frames=10)
    result = await run_load("instant", "memory", open_lane, plan)
    assert len(lanes) == 3
    assert all(lane.closed for lane in lanes)
    warmed_up = sum(len(lane.frame_ids) for lane in lanes)
    assert 200 <= result.frames < warmed_up, "the warm-up's replies are not measured"
    assert result.errors == {}
    assert all(0 <= frame < 10 for lane in lanes for frame in lane.frame_ids)
    assert result.bytes_received >= 200 * size_for(0)
    assert (result.connections, result.depth) == (3, 2)


async def test_a_timed_run_lasts_its_duration_and_watches_this_process_as_the_client() -> None:
    async def open_lane() -> InstantLane:
        return InstantLane()

    plan = Plan(connections=1, warmup_s=0.0, duration_s=0.3)
    result = await run_load("instant", "memory", open_lane, plan, watch=[Watched(os.getpid(), "proxy")])
    assert result.wall_s >= 0.3
    assert result.frames > 0
    assert {use.role for use in result.cpu} == {"proxy", "client"}
    assert result.labels["load_average"]


class FailingLane:
    """Fails every request with OUT_OF_RANGE, and the tenth with a lost connection."""

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, frame_id: int) -> int:
        self.calls += 1
        await asyncio.sleep(0.001)
        if self.calls >= 10:
            raise LaneClosedError("gone")
        raise RequestError("OUT_OF_RANGE", "frame_id too large")

    async def close(self) -> None:
        pass


async def test_errors_are_counted_by_code_and_a_run_whose_lanes_are_all_lost_ends_early() -> None:
    async def open_lane() -> FailingLane:
        return FailingLane()

    plan = Plan(connections=2, warmup_s=0.0, duration_s=30.0)
    result = await asyncio.wait_for(run_load("failing", "memory", open_lane, plan), timeout=10)
    assert result.wall_s < 10
    assert result.frames == 0
    assert result.errors == {"OUT_OF_RANGE": 18, "CONNECTION_LOST": 2}


@pytest.mark.parametrize(
    "plan",
    [
        {"connections": 0},
        {"depth": 0},
        {"frames": 0},
        {"warmup_s": -1},
        {"duration_s": 0},
        {"count": 0},
    ],
)
def test_a_plan_that_cannot_run_is_refused(plan: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Plan(**plan)  # type: ignore[arg-type]
