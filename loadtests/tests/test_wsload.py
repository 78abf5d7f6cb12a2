from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loadtests import wsload
from loadtests.driver import LaneClosedError, Plan, RequestError
from loadtests.wsload import V1Lane, V2Lane, v1_reply_size, v1_request, ws_load

from .doubles import ProxyDouble, size_for, sized_jpeg


@pytest.fixture
async def proxy_double() -> AsyncIterator[ProxyDouble]:
    double = await ProxyDouble(frames=300).start()
    yield double
    await double.stop()


def test_a_v1_request_is_the_seeds_bytes() -> None:
    assert v1_request(b"sanders", 50).hex(" ") == "07 73 61 6e 64 65 72 73 32 00 00 00"


def test_a_v1_reply_is_a_jpeg_or_an_error_with_its_code() -> None:
    assert v1_reply_size(sized_jpeg(98_432)) == 98_432
    with pytest.raises(RequestError) as error:
        v1_reply_size(json.dumps({"type": "error", "code": "NOT_FOUND", "message": "no bob"}))
    assert error.value.code == "NOT_FOUND"
    for bad in (b"", b"\x00\x01", "not json", "[]"):
        with pytest.raises(RequestError) as error:
            v1_reply_size(bad)
        assert error.value.code == "BAD_REPLY"


async def test_pipelined_v1_replies_are_matched_to_their_requests_in_order(proxy_double: ProxyDouble) -> None:
    lane = await V1Lane.open(proxy_double.url, "demo")
    try:
        sizes = await asyncio.gather(*(lane.request(frame) for frame in range(8)))
        assert sizes == [size_for(frame) for frame in range(8)]
        with pytest.raises(RequestError) as error:
            await lane.request(300)
        assert error.value.code == "OUT_OF_RANGE"
    finally:
        await lane.close()


async def test_v2_replies_out_of_order_are_matched_by_request_id(proxy_double: ProxyDouble) -> None:
    lane = await V2Lane.open(proxy_double.url, "demo")
    try:
        frames = [5, 9, 0, 42, 299, 7]
        sizes = await asyncio.gather(*(lane.request(frame) for frame in frames))
        assert sizes == [size_for(frame) for frame in frames]
        with pytest.raises(RequestError) as error:
            await lane.request(301)
        assert error.value.code == "OUT_OF_RANGE"
    finally:
        await lane.close()


@pytest.mark.parametrize("lane_type", [V1Lane, V2Lane])
async def test_a_closed_connection_fails_the_waiting_requests_as_lost(
    lane_type: type[V1Lane | V2Lane],
) -> None:
    double = await ProxyDouble(close_after=2).start()
    lane = await lane_type.open(double.url, "demo")
    try:
        results = await asyncio.gather(*(lane.request(frame) for frame in range(4)), return_exceptions=True)
        lost = [r for r in results if isinstance(r, LaneClosedError)]
        assert lost, results
        with pytest.raises(LaneClosedError):
            await lane.request(0)
    finally:
        await lane.close()
        await double.stop()


@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_a_websocket_run_counts_frames_bytes_and_errors(
    proxy_double: ProxyDouble, protocol: str
) -> None:
    plan = Plan(connections=2, depth=3, warmup_s=0.05, count=120, frames=301)
    result = await ws_load(proxy_double.url, protocol, plan)
    assert result.frames + sum(result.errors.values()) >= 120
    assert set(result.errors) <= {"OUT_OF_RANGE"}, "frame 300 is out of the double's range"
    assert result.bytes_received >= result.frames * size_for(0)
    assert result.labels["protocol"] == protocol


def test_the_command_line_writes_its_result_as_json(tmp_path: Path) -> None:
    async def run() -> None:
        double = await ProxyDouble().start()
        try:
            out = tmp_path / "result.json"
            argv = ["--url", double.url, "--protocol", "v2", "-c", "2", "-d", "2", "--warmup", "0",
                    "--count", "50", "--no-progress", "--json", str(out)]  # fmt: skip
            await asyncio.to_thread(wsload.main, argv)
            summary = json.loads(out.read_text())
            assert summary["name"] == "proxy v2"
            assert summary["frames"] >= 50
            assert summary["error_count"] == 0
        finally:
            await double.stop()

    asyncio.run(run())
