"""Several backends behind one proxy: taken in turn while their watched health is SERVING; failover."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from lipsync_common.waiting import TIME_UNIT, wait_until

from .doubles import double_stats, frame_id_of, set_double_serving
from .processes import DoubleProcess, ProxyProcess, v1_request

pytestmark = pytest.mark.integration


@pytest.fixture
def two_backends(logs_dir: Path) -> Iterator[tuple[ProxyProcess, DoubleProcess, DoubleProcess]]:
    """A proxy in front of two doubles, the first named by host name (resolved once at start)."""
    first = DoubleProcess(logs_dir, payload_size=1000).start()
    second = DoubleProcess(logs_dir, payload_size=1000).start()
    proxy = ProxyProcess(logs_dir, grpc_addr=f"localhost:{first.port},127.0.0.1:{second.port}")
    try:
        first.wait_ready(20 * TIME_UNIT)
        second.wait_ready(20 * TIME_UNIT)
        proxy.start().wait_ready(20 * TIME_UNIT)
        wait_until(
            lambda: [b["status"] for b in proxy.health().json()["backends"]] == ["SERVING", "SERVING"],  # type: ignore[index]
            10 * TIME_UNIT,
            "both backends SERVING",
        )
        yield proxy, first, second
    finally:
        for process in (proxy, first, second):
            if process.process is not None:
                process.stop(signal.SIGKILL)


async def frames_served(backend: DoubleProcess) -> int:
    """Frames the backend has been asked for, whichever call carried them."""
    return (await double_stats(backend.address))["calls"].get("frame", 0)


async def calls_served(backend: DoubleProcess) -> int:
    """The calls that carried frames to the backend: the balancer takes the backends in turn per call."""
    calls = (await double_stats(backend.address))["calls"]
    return calls.get("Infer", 0) + calls.get("InferBatch", 0)


async def send_frames(proxy: ProxyProcess, count: int) -> list[int]:
    """Send `count` v1 requests, up to 8 at a time; the frame ids of the replies."""
    async with connect(proxy.ws_url) as ws:
        replies = []
        for start in range(0, count, 8):
            batch = range(start, min(count, start + 8))
            for frame_id in batch:
                await ws.send(v1_request("demo", frame_id))
            for _ in batch:
                reply = await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
                assert isinstance(reply, bytes), reply
                replies.append(frame_id_of(reply))
    return replies


async def test_two_backends_both_receive_traffic_and_killing_one_loses_no_later_request(
    two_backends: tuple[ProxyProcess, DoubleProcess, DoubleProcess],
) -> None:
    proxy, first, second = two_backends
    assert await send_frames(proxy, 40) == list(range(40))
    assert await calls_served(first) >= 3
    assert await calls_served(second) >= 3

    first.stop(signal.SIGKILL)
    calls_before = await frames_served(second)
    assert await send_frames(proxy, 100) == list(range(100))
    assert await frames_served(second) - calls_before >= 100


async def test_a_backend_that_is_not_serving_gets_no_calls_until_it_serves_again(
    two_backends: tuple[ProxyProcess, DoubleProcess, DoubleProcess],
) -> None:
    proxy, first, _second = two_backends
    # Streams to both backends are open from these frames on.
    assert await send_frames(proxy, 16) == list(range(16))
    await set_double_serving(first.address, serving=False)
    await asyncio.to_thread(
        wait_until,
        lambda: proxy.health().json()["backends"][0]["status"] == "NOT_SERVING",  # type: ignore[index]
        5 * TIME_UNIT,
        "the first backend NOT_SERVING",
    )
    before = await frames_served(first)
    assert await send_frames(proxy, 30) == list(range(30))
    assert await frames_served(first) == before

    await set_double_serving(first.address, serving=True)
    await asyncio.to_thread(
        wait_until,
        lambda: proxy.health().json()["backends"][0]["status"] == "SERVING",  # type: ignore[index]
        5 * TIME_UNIT,
        "the first backend SERVING again",
    )
    await send_frames(proxy, 30)
    assert await frames_served(first) > before
