from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from lipsync_protos.lipsync.v1 import lipsync_pb2
from loadtests.backend import PAYLOAD_SIZE, BackendConfig, RunningBackend, start_backend
from loadtests.direct import Requests, direct_load, reply_size
from loadtests.driver import Plan, RequestError


@pytest.fixture
async def backend() -> AsyncIterator[RunningBackend]:
    running = await start_backend(BackendConfig(delay_s=0.002))
    yield running
    await running.server.stop(grace=None)


@pytest.mark.parametrize("mode", ["unary", "stream"])
async def test_a_direct_run_gets_every_frame_from_the_backend(backend: RunningBackend, mode: str) -> None:
    plan = Plan(connections=3, depth=2, warmup_s=0.05, count=60)
    result = await direct_load(backend.address, mode, plan)
    assert result.errors == {}
    assert result.frames >= 60
    assert result.bytes_received == result.frames * PAYLOAD_SIZE
    assert min(result.latencies_ms) >= 2.0, "no reply before the backend's delay"
    assert result.labels["mode"] == mode


def test_requests_are_serialized_once_per_frame() -> None:
    requests = Requests("demo")
    assert requests(7) is requests(7)
    assert lipsync_pb2.InferRequest.FromString(requests(7)) == lipsync_pb2.InferRequest(
        model_name="demo", frame_id=7
    )


def test_a_stream_item_that_failed_raises_its_status_name() -> None:
    failed = lipsync_pb2.InferResponse(
        error=lipsync_pb2.Error(code=grpc.StatusCode.OUT_OF_RANGE.value[0], message="no")
    )
    with pytest.raises(RequestError) as error:
        reply_size(failed.SerializeToString())
    assert error.value.code == "OUT_OF_RANGE"
    with pytest.raises(RequestError) as error:
        reply_size(lipsync_pb2.InferResponse(frame_id=1).SerializeToString())
    assert error.value.code == "BAD_REPLY"
    with pytest.raises(RequestError) as error:
        reply_size(b"\x2a\xff")
    assert error.value.code == "BAD_REPLY"
    assert reply_size(lipsync_pb2.InferResponse(image=b"\xff\xd8\xff\xd9").SerializeToString()) == 4
