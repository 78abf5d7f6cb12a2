from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc
from loadtests.backend import PAYLOAD_SIZE, BackendConfig, RunningBackend, payload, start_backend


@pytest.fixture
async def backend() -> AsyncIterator[RunningBackend]:
    running = await start_backend(BackendConfig(delay_s=0.1))
    yield running
    await running.server.stop(grace=None)


def test_the_payload_is_jpeg_shaped_and_does_not_compress() -> None:
    data = payload()
    assert len(data) == PAYLOAD_SIZE == 98_432
    assert data.startswith(b"\xff\xd8")
    assert data.endswith(b"\xff\xd9")
    assert len(zlib.compress(data)) > 0.99 * len(data)
    assert payload() == data, "the same bytes every time"
    with pytest.raises(ValueError, match="at least 4"):
        payload(3)


async def test_infer_answers_the_fixed_frame_after_the_delay(backend: RunningBackend) -> None:
    async with grpc.aio.insecure_channel(backend.address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        started = time.perf_counter()
        reply = await stub.Infer(lipsync_pb2.InferRequest(model_name="demo", frame_id=3), timeout=5)
        assert time.perf_counter() - started >= 0.1
    assert reply.image == payload()
    assert (reply.width, reply.height, reply.model_name) == (1280, 720, "demo")


async def test_a_stream_is_answered_once_per_request_and_worked_on_eight_at_a_time(
    backend: RunningBackend,
) -> None:
    async with grpc.aio.insecure_channel(backend.address) as channel:
        call = lipsync_pb2_grpc.LipSyncStub(channel).StreamInfer(timeout=10)
        started = time.perf_counter()
        for frame in range(8):
            await call.write(lipsync_pb2.InferRequest(model_name="demo", frame_id=frame))
        replies = [await call.read() for _ in range(8)]
        elapsed = time.perf_counter() - started
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
    assert all(isinstance(reply, lipsync_pb2.InferResponse) and reply.image == payload() for reply in replies)
    # One after the other they would take 8 × 0.1 s; pipelined about 0.1 s.
    assert 0.1 <= elapsed < 0.6


async def test_health_says_serving_and_the_model_is_listed(backend: RunningBackend) -> None:
    async with grpc.aio.insecure_channel(backend.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "lipsync.v1.LipSync"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        models = await stub.ListModels(lipsync_pb2.ListModelsRequest(), timeout=5)
        assert [m.name for m in models.models] == ["demo"]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetModelMetadata(lipsync_pb2.GetModelMetadataRequest(model_name="bob"), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_zero_delay_stream_answers_as_fast_as_it_reads() -> None:
    running = await start_backend(BackendConfig())
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            call = lipsync_pb2_grpc.LipSyncStub(channel).StreamInfer(timeout=10)
            for frame in range(3):
                await call.write(lipsync_pb2.InferRequest(model_name="demo", frame_id=frame))
            await call.done_writing()
            replies = [reply async for reply in call]
        assert len(replies) == 3
    finally:
        await running.server.stop(grace=None)
        await asyncio.sleep(0)
