"""The seed-compatible servicer's own rules, on a core with test doubles: metrics, devices, limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from doubles import PaintEngineDouble, tiny_package

from lipsync_protos import optimized_lipsyncsrv_pb2 as seed
from lipsync_server import seed_servicer
from lipsync_server.core import ServerCore
from lipsync_server.inference import InferenceRunner
from lipsync_server.metrics import ServerMetrics
from lipsync_server.registry import ModelEntry, ModelRegistry, ModelState
from lipsync_server.seed_servicer import SeedServicer
from lipsync_server.settings import Settings


class AbortedError(Exception):
    """What the context double raises where grpc would end the call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ContextDouble:
    """The bits of grpc.aio.ServicerContext the servicer uses."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AbortedError(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


@dataclass
class GpuEngineDouble(PaintEngineDouble):
    def device(self, package: Any) -> str:
        return "cuda"


def servicer(max_queue: int = 8) -> tuple[SeedServicer, ServerCore]:
    core = ServerCore(
        Settings(max_queue=max_queue),
        ModelRegistry(),
        InferenceRunner(1, max_queue),
        ServerMetrics(),
        lambda path, name: None,  # type: ignore[arg-type,return-value]
        {"paint": GpuEngineDouble()},
    )
    package = tiny_package(frames=4)
    core.registry.set(ModelEntry("tiny", ModelState.READY, Path("t"), package, GpuEngineDouble()))
    return SeedServicer(core), core


def requests(core: ServerCore, method: str, code: str) -> float:
    value = core.metrics.registry.get_sample_value(
        "lipsync_server_requests_total", {"method": method, "code": code}
    )
    return value or 0.0


async def test_get_stats_reports_the_engines_device() -> None:
    service, _ = servicer()

    stats = await service.GetStats(seed.StatsRequest(model_name="tiny"), ContextDouble())  # type: ignore[arg-type]

    assert stats.device == "cuda"
    assert stats.frame_count == 4


async def test_a_failed_inference_is_counted_under_its_status_though_its_call_is_ok() -> None:
    service, core = servicer()

    reply = await service.GenerateInference(
        seed.OptimizedInferenceRequest(model_name="nobody", frame_id=1),
        ContextDouble(),  # type: ignore[arg-type]
    )

    assert not reply.success
    assert requests(core, "seed.GenerateInference", "NOT_FOUND") == 1
    assert requests(core, "seed.GenerateInference", "OK") == 0


async def test_a_failed_lookup_sets_not_found_and_says_why_in_the_reply_too() -> None:
    service, core = servicer()
    context = ContextDouble()

    reply = await service.GetModelMetadata(seed.GetModelMetadataRequest(model_name="nobody"), context)  # type: ignore[arg-type]

    assert context.code == grpc.StatusCode.NOT_FOUND
    assert "nobody" in context.details
    assert not reply.success
    assert reply.error.startswith("NOT_FOUND: ")
    assert requests(core, "seed.GetModelMetadata", "NOT_FOUND") == 1


async def test_failed_frames_of_a_batch_are_item_errors() -> None:
    service, core = servicer()

    reply = await service.GenerateBatchInference(
        seed.BatchInferenceRequest(model_name="tiny", frame_ids=[0, 9]),
        ContextDouble(),  # type: ignore[arg-type]
    )

    assert [r.success for r in reply.responses] == [True, False]
    errors = core.metrics.registry.get_sample_value(
        "lipsync_server_item_errors_total", {"method": "seed.GenerateBatchInference", "code": "OUT_OF_RANGE"}
    )
    assert errors == 1


async def test_a_batch_longer_than_the_queue_is_rendered_a_queue_at_a_time() -> None:
    service, _ = servicer(max_queue=3)

    reply = await service.GenerateBatchInference(
        seed.BatchInferenceRequest(model_name="tiny", frame_ids=[f % 4 for f in range(10)]),
        ContextDouble(),  # type: ignore[arg-type]
    )

    assert [r.frame_id for r in reply.responses] == [f % 4 for f in range(10)]
    assert all(r.success for r in reply.responses)


async def test_a_batch_whose_reply_would_pass_the_message_limit_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _ = servicer(max_queue=4)
    monkeypatch.setattr(seed_servicer, "MAX_SEND_BYTES", 10_000)

    with pytest.raises(AbortedError) as caught:
        await service.GenerateBatchInference(
            seed.BatchInferenceRequest(model_name="tiny", frame_ids=[0] * 1000),
            ContextDouble(),  # type: ignore[arg-type]
        )

    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10,000-byte message limit" in caught.value.details


@pytest.mark.parametrize("method", ["GenerateBatchInference", "GenerateBatchWithAudio"])
async def test_a_batch_of_more_frames_than_one_call_renders_is_refused_at_once(method: str) -> None:
    service, core = servicer()
    count = seed_servicer.MAX_BATCH_FRAMES + 1
    request: Any = (
        seed.BatchInferenceRequest(model_name="tiny", frame_ids=[0] * count)
        if method == "GenerateBatchInference"
        else seed.BatchInferenceWithAudioRequest(model_name="tiny", frame_count=count)
    )

    with pytest.raises(AbortedError) as caught:
        await getattr(service, method)(request, ContextDouble())

    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details.startswith(f"{count:,} frames, more than the 16,384 one call renders")
    assert requests(core, f"seed.{method}", "RESOURCE_EXHAUSTED") == 1
