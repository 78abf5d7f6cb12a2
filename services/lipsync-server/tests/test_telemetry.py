from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from doubles import PaintEngineDouble, tiny_package
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from span_recording import SpanRecorder

from lipsync_common.tracing import TracingConfig
from lipsync_server.inference import InferenceRunner
from lipsync_server.registry import ReadyModel
from lipsync_server.render import OutputMode, RenderRequest, render
from lipsync_server.settings import SettingsError
from lipsync_server.telemetry import (
    SpanParent,
    current_parent,
    is_traced,
    server_interceptors,
    stage_span,
    stage_tracer,
    tracer_provider,
    tracing_config,
)
from lipsync_server.tracing_interceptor import ServerInterceptor

ENDPOINT = "http://collector:4317"


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
def call_span(recorder: SpanRecorder) -> Iterator[trace.Span]:
    """A recording span made current, standing in for the gRPC server span of a call."""
    tracer = recorder.provider.get_tracer("test")
    with tracer.start_as_current_span("/lipsync.v1.LipSync/Infer") as span:
        yield span


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


# --- the OTEL_* variables (lipsync_common.tracing reads them) ------------------------------------------


def test_usable_variables_give_their_config() -> None:
    assert tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}) == TracingConfig(ENDPOINT)
    assert tracing_config({}).endpoint is None


def test_every_unusable_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        tracing_config(
            {
                "OTEL_TRACES_EXPORTER": "zipkin",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
            }
        )
    message = str(error.value)
    for expected in ("zipkin", "http/protobuf", "'collector:4317'", "'soon'"):
        assert expected in message


# --- the provider and the interceptor -------------------------------------------------------------------


def test_no_provider_and_no_interceptor_when_tracing_is_off() -> None:
    provider = tracer_provider(TracingConfig())
    assert provider is None
    assert server_interceptors(provider) == []
    assert stage_tracer(provider) is None


def test_the_service_is_named_lipsync_server_unless_otel_service_name_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    names = []
    for service_name in (None, "server-eu-1"):
        if service_name is not None:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service_name)
        provider = tracer_provider(TracingConfig("http://127.0.0.1:9", 0.1))
        assert provider is not None
        names.append(provider.resource.attributes["service.name"])
        provider.shutdown()
    assert names == ["lipsync-server", "server-eu-1"]


def test_a_provider_gives_the_server_its_tracing_interceptor(recorder: SpanRecorder) -> None:
    (interceptor,) = server_interceptors(recorder.provider)
    assert isinstance(interceptor, ServerInterceptor)


def test_health_checks_and_reflection_are_not_traced() -> None:
    def traced(method: str) -> bool:
        # grpc.HandlerCallDetails is only a protocol; the filter reads `method`.
        return is_traced(SimpleNamespace(method=method, invocation_metadata=()))

    assert traced("/lipsync.v1.LipSync/Infer")
    assert traced("/optimized_lipsyncsrv.OptimizedLipSyncService/GenerateInference")
    assert not traced("/grpc.health.v1.Health/Check")
    assert not traced("/grpc.health.v1.Health/Watch")
    assert not traced("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not traced("/optimized_lipsyncsrv.OptimizedLipSyncService/HealthCheck")


# --- stage spans ----------------------------------------------------------------------------------------


def test_no_parent_is_captured_without_a_tracer_or_a_recording_span(recorder: SpanRecorder) -> None:
    tracer = recorder.provider.get_tracer("test")
    assert current_parent(None, {}) is None
    assert current_parent(tracer, {}) is None, "no current span"
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        assert current_parent(tracer, {}) is None, "a span that is not sampled"


def test_the_captured_parent_is_the_current_span_which_gets_the_attributes(
    recorder: SpanRecorder, call_span: trace.Span
) -> None:
    parent = current_parent(recorder.provider.get_tracer("test"), {"lipsync.model": "tiny"})
    assert parent is not None
    assert trace.get_current_span(parent.context) is call_span
    call_span.end()
    (ended,) = recorder.spans()
    assert ended.attributes is not None
    assert ended.attributes["lipsync.model"] == "tiny"


def test_a_rendered_frame_has_one_span_per_stage_under_its_call(
    recorder: SpanRecorder, call_span: trace.Span
) -> None:
    parent = current_parent(stage_tracer(recorder.provider), {})
    requests = [
        RenderRequest(frame_id=1, trace=parent),
        RenderRequest(frame_id=2, output_mode=OutputMode.FACE_CROP, jpeg_quality=70, trace=parent),
    ]
    frames = render(PaintEngineDouble(), tiny_package(), requests)
    call_id = call_span.get_span_context().span_id
    stages = recorder.spans()
    assert [span.name for span in stages] == [
        *["audio_features"] * 2,
        *["inference"] * 2,
        *["composite", "encode"] * 2,
    ]
    assert all(parent_of(span) == call_id for span in stages)
    by_frame = {
        (span.name, span.attributes["lipsync.frame_id"]): dict(span.attributes)
        for span in stages
        if span.attributes
    }
    assert by_frame[("inference", 1)] == {"lipsync.frame_id": 1, "lipsync.batch_size": 2}
    assert by_frame[("audio_features", 2)]["lipsync.batch_size"] == 2
    assert by_frame[("composite", 2)]["lipsync.output_mode"] == "face_crop"
    assert by_frame[("encode", 2)] == {
        "lipsync.frame_id": 2,
        "lipsync.jpeg_quality": 70,
        "lipsync.image_bytes": len(frames[1].image),
    }


def test_frames_without_a_parent_make_no_spans(recorder: SpanRecorder) -> None:
    render(PaintEngineDouble(), tiny_package(), [RenderRequest(frame_id=1)])
    assert recorder.spans() == []


def test_a_failing_stage_ends_its_span_as_an_error_and_the_error_goes_on(
    recorder: SpanRecorder, call_span: trace.Span
) -> None:
    parent = current_parent(stage_tracer(recorder.provider), {})
    assert parent is not None
    frame = RenderRequest(frame_id=3, trace=parent)
    with pytest.raises(RuntimeError, match="engine broke"), stage_span("inference", [frame]):
        raise RuntimeError("engine broke")
    (span,) = recorder.spans()
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


async def test_the_runner_hands_the_callers_span_to_the_worker_thread(
    recorder: SpanRecorder, call_span: trace.Span
) -> None:
    runner = InferenceRunner(1, 4, stage_tracer(recorder.provider))
    try:
        model = ReadyModel(tiny_package(), PaintEngineDouble())
        await runner.render(model, [RenderRequest(frame_id=0)])
        seen: list[trace.Span] = []
        await runner.call(lambda: seen.append(trace.get_current_span()))
    finally:
        runner.shutdown()
    call_span.end()
    call_id = call_span.get_span_context().span_id
    stages = [span for span in recorder.spans() if span.name != "/lipsync.v1.LipSync/Infer"]
    assert {span.name for span in stages} == {"audio_features", "inference", "composite", "encode"}
    assert all(parent_of(span) == call_id for span in stages)
    (call,) = recorder.named("/lipsync.v1.LipSync/Infer")
    assert call.attributes is not None
    assert call.attributes["lipsync.model"] == "tiny"
    assert seen == [call_span], "a blocking call sees the caller's span (for its logs)"


async def test_a_batch_of_frames_from_two_calls_puts_each_frames_stages_in_its_own_trace(
    recorder: SpanRecorder,
) -> None:
    tracer = recorder.provider.get_tracer("test")
    parents: list[SpanParent] = []
    for name in ("call-a", "call-b"):
        with tracer.start_as_current_span(name):
            parent = current_parent(stage_tracer(recorder.provider), {})
            assert parent is not None
            parents.append(parent)
    requests = [RenderRequest(frame_id=i, trace=parent) for i, parent in enumerate(parents)]
    await asyncio.get_running_loop().run_in_executor(
        None, render, PaintEngineDouble(), tiny_package(), requests
    )
    calls = {span.name: span.context.trace_id for span in recorder.spans() if span.name.startswith("call")}
    for span in recorder.named("inference"):
        assert span.attributes is not None
        owner = "call-a" if span.attributes["lipsync.frame_id"] == 0 else "call-b"
        assert span.context.trace_id == calls[owner]
        assert span.attributes["lipsync.batch_size"] == 2
