"""The proxy's batches answer exactly as a unary call per frame does: the same replies, in the same
order, with the same errors, through two real proxies in front of one double."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.waiting import TIME_UNIT, wait_until
from lipsync_protocol import v2
from lipsync_protocol.fields import OutputMode

from .doubles import double_stats
from .processes import DoubleProcess, ProxyProcess, v1_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def unary_proxy(double: DoubleProcess, logs_dir: Path) -> Iterator[ProxyProcess]:
    """A proxy that sends every frame as an `Infer` call of its own."""
    process = ProxyProcess(logs_dir, grpc_addr=double.address, args=["--max-batch", "1"])
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        wait_until(lambda: process.health().status == 200, 10 * TIME_UNIT, "the proxy's /health 200")
        yield process
    finally:
        process.stop()


async def replies(ws: ClientConnection, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT) for _ in range(count)]


async def v1_session(proxy: ProxyProcess) -> list[str | bytes]:
    """Pipelined frames that complete out of order (frame f takes f ms), bad ones between them."""
    requests = [v1_request("demo", f) for f in (70, 60, 5000, 50, 0, 40)] + [v1_request("nobody", 1)]
    requests += [v1_request("demo", f) for f in (30, 20, 10, 0)]
    async with connect(proxy.ws_url) as ws:
        for message in requests:
            await ws.send(message)
        return await replies(ws, len(requests))


async def v2_session(proxy: ProxyProcess) -> dict[int, v2.ServerMessage]:
    """INFERs of both output modes, bad ones among them; replies keyed by request id."""
    requests = [
        v2.InferRequest(1, "demo", 40),
        v2.InferRequest(2, "demo", 5000),
        v2.InferRequest(3, "demo", 3, output_mode=OutputMode.FACE_CROP),
        v2.InferRequest(4, "nobody", 3),
        v2.InferRequest(5, "demo", 0, jpeg_quality=50),
    ]
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        for request in requests:
            await ws.send(v2.encode_client(request))
        answers = [v2.decode_server(message) for message in await replies(ws, len(requests))]  # type: ignore[arg-type]
    return {answer.request_id: answer for answer in answers}


async def json_session(proxy: ProxyProcess) -> list[dict[str, object]]:
    requests = [
        {"type": "inference", "id": 1, "model_name": "demo", "frame_id": 12, "include_image": True},
        {"type": "inference", "id": 2, "model_name": "demo", "frame_id": 5000},
    ]
    async with connect(proxy.ws_url) as ws:
        for request in requests:
            await ws.send(json.dumps(request))
        answers = [json.loads(message) for message in await replies(ws, len(requests))]
    for answer in answers:
        answer.pop("processing_time_ms", None)  # the one field that differs from run to run
    return answers


async def test_v1_replies_are_the_same_in_the_same_order(
    proxy: ProxyProcess, unary_proxy: ProxyProcess
) -> None:
    batched, unary = await asyncio.gather(v1_session(proxy), v1_session(unary_proxy))
    assert batched == unary
    assert [type(reply) for reply in unary].count(str) == 2


async def test_v2_replies_are_the_same(proxy: ProxyProcess, unary_proxy: ProxyProcess) -> None:
    batched, unary = await asyncio.gather(v2_session(proxy), v2_session(unary_proxy))
    assert batched == unary
    assert isinstance(unary[2], v2.ErrorReply)
    assert isinstance(unary[3], v2.FrameReply)


async def test_json_replies_are_the_same(proxy: ProxyProcess, unary_proxy: ProxyProcess) -> None:
    batched, unary = await asyncio.gather(json_session(proxy), json_session(unary_proxy))
    assert batched == unary
    assert unary[1]["code"] == "OUT_OF_RANGE"


async def test_the_proxies_used_different_carriers(
    proxy: ProxyProcess, unary_proxy: ProxyProcess, double: DoubleProcess
) -> None:
    before = await double_stats(double.address)
    await v1_session(unary_proxy)
    after = await double_stats(double.address)
    # The unary proxy made a call per frame.
    assert after["calls"].get("InferBatch", 0) == before["calls"].get("InferBatch", 0)
    assert after["calls"]["Infer"] - before["calls"].get("Infer", 0) == 11
    await v1_session(proxy)
    later = await double_stats(double.address)
    # The other sent frames in batches.
    assert later["calls"].get("InferBatch", 0) - after["calls"].get("InferBatch", 0) >= 1
