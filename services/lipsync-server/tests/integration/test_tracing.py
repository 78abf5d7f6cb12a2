"""Traces of the real server process, exported over OTLP/gRPC to the real sink process."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lipsync_otlp_sink.process import SinkProcess
from lipsync_otlp_sink.store import SpanRecord
from package_factory import write_native_package
from server_process import TIME_UNIT, ServerProcess

from lipsync_common.ports import free_port
from lipsync_protos import optimized_lipsyncsrv_pb2 as seed
from lipsync_protos import optimized_lipsyncsrv_pb2_grpc
from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

pytestmark = pytest.mark.integration

MODEL = "tracing"
STAGES = ("audio_features", "inference", "composite", "encode")
SERVER_KIND = 2  # OTLP's SPAN_KIND_SERVER
# Exported spans reach the sink within a few schedule delays of their end.
EXPORT_ENV = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "50"}


@dataclass
class Servers:
    traced: ServerProcess
    collector_down: ServerProcess
    untraced: ServerProcess


def start_server(models: Path, cache: Path, env: Mapping[str, str]) -> ServerProcess:
    """A server over the test model, its environment's OTEL_* variables being exactly `env`."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("OTEL_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        args = ["--models-dir", str(models), "--grace-period", "1", "--log-format", "json"]
        return ServerProcess(args, cache).start()


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkProcess]:
    process = SinkProcess().start()
    try:
        process.wait_ready(20 * TIME_UNIT)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, sink: SinkProcess) -> Iterator[Servers]:
    """Three servers started together: exporting to the sink, exporting to a closed port, not tracing."""
    models = tmp_path_factory.mktemp("tracing-models")
    write_native_package(models / MODEL, name=MODEL, width=640, height=360)
    cache = tmp_path_factory.mktemp("tracing-cache")
    closed = f"http://127.0.0.1:{free_port()}"
    started = Servers(
        traced=start_server(models, cache, {**EXPORT_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}),
        collector_down=start_server(models, cache, {**EXPORT_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": closed}),
        untraced=start_server(models, cache, {}),
    )
    everyone = (started.traced, started.collector_down, started.untraced)
    try:
        for server in everyone:
            server.wait_serving(60 * TIME_UNIT)
        yield started
    finally:
        for server in everyone:
            server.stop()


def stub(server: ServerProcess) -> tuple[grpc.Channel, lipsync_pb2_grpc.LipSyncStub]:
    channel = grpc.insecure_channel(server.address)
    return channel, lipsync_pb2_grpc.LipSyncStub(channel)


def new_traceparent() -> tuple[str, str, tuple[tuple[str, str]]]:
    """A sampled W3C traceparent for a fresh trace: its trace id, parent span id, and as metadata."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, (("traceparent", f"00-{trace_id}-{parent_id}-01"),)


def stage_count(spans: list[SpanRecord]) -> int:
    return sum(1 for span in spans if span.name in STAGES)


def assert_one_frame_under(server_span: SpanRecord, spans: list[SpanRecord], frame_id: int) -> None:
    """The four stage spans of `frame_id` are children of `server_span`, inside its interval."""
    stages = {span.name: span for span in spans if span.attributes.get("lipsync.frame_id") == frame_id}
    assert sorted(stages) == sorted(STAGES)
    for span in stages.values():
        assert span.parent_span_id == server_span.span_id
        assert span.trace_id == server_span.trace_id
        assert server_span.start_unix_nano <= span.start_unix_nano <= span.end_unix_nano
        assert span.end_unix_nano <= server_span.end_unix_nano
    assert stages["inference"].attributes["lipsync.batch_size"] == 1
    assert stages["composite"].attributes["lipsync.output_mode"] == "full_frame"
    assert int(stages["encode"].attributes["lipsync.image_bytes"]) > 0


def test_one_infer_is_one_trace_from_the_server_span_to_the_encoder(
    servers: Servers, sink: SinkProcess
) -> None:
    channel, lipsync = stub(servers.traced)
    with channel:
        lipsync.Infer(pb.InferRequest(model_name=MODEL, frame_id=5), timeout=10 * TIME_UNIT)

    def encodes(spans: list[SpanRecord]) -> list[SpanRecord]:
        return [s for s in spans if s.name == "encode" and s.attributes.get("lipsync.frame_id") == 5]

    (encode,) = encodes(sink.wait_for_spans(lambda spans: bool(encodes(spans)), 20 * TIME_UNIT))
    spans = sink.wait_for_spans(lambda spans: len(spans) >= 5, 20 * TIME_UNIT, trace_id=encode.trace_id)
    assert len(spans) == 5
    (server_span,) = [s for s in spans if s.name == "/lipsync.v1.LipSync/Infer"]
    assert server_span.parent_span_id == "", "without a traceparent the server span starts the trace"
    assert server_span.kind == SERVER_KIND
    assert server_span.service == "lipsync-server"
    assert server_span.attributes["rpc.method"] == "Infer"
    assert server_span.attributes["rpc.grpc.status_code"] == 0
    assert server_span.attributes["lipsync.model"] == MODEL
    assert_one_frame_under(server_span, spans, frame_id=5)


def test_a_client_traceparent_becomes_the_parent_of_the_server_span(
    servers: Servers, sink: SinkProcess
) -> None:
    trace_id, parent_id, metadata = new_traceparent()
    channel, lipsync = stub(servers.traced)
    with channel:
        lipsync.Infer(
            pb.InferRequest(model_name=MODEL, frame_id=2), metadata=metadata, timeout=10 * TIME_UNIT
        )
    spans = sink.wait_for_spans(lambda spans: len(spans) >= 5, 20 * TIME_UNIT, trace_id=trace_id)
    (server_span,) = [s for s in spans if s.kind == SERVER_KIND]
    assert server_span.parent_span_id == parent_id
    assert_one_frame_under(server_span, spans, frame_id=2)


def test_a_stream_traces_every_frame_under_its_one_server_span(servers: Servers, sink: SinkProcess) -> None:
    trace_id, parent_id, metadata = new_traceparent()
    channel, lipsync = stub(servers.traced)
    with channel:
        requests = iter([pb.InferRequest(model_name=MODEL, frame_id=i) for i in (1, 3, 4)])
        replies = list(lipsync.StreamInfer(requests, metadata=metadata, timeout=10 * TIME_UNIT))
    assert [reply.frame_id for reply in replies] == [1, 3, 4]
    # The stream's server span ends after its frames' stage spans: wait for all of them.
    spans = sink.wait_for_spans(
        lambda spans: stage_count(spans) >= 12 and any(s.kind == SERVER_KIND for s in spans),
        20 * TIME_UNIT,
        trace_id=trace_id,
    )
    (server_span,) = [s for s in spans if s.kind == SERVER_KIND]
    assert server_span.name == "/lipsync.v1.LipSync/StreamInfer"
    assert server_span.parent_span_id == parent_id
    for frame_id in (1, 3, 4):
        assert_one_frame_under(server_span, spans, frame_id)


def test_the_seed_service_is_traced_too(servers: Servers, sink: SinkProcess) -> None:
    trace_id, _, metadata = new_traceparent()
    with grpc.insecure_channel(servers.traced.address) as channel:
        stub = optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceStub(channel)
        request = seed.OptimizedInferenceRequest(model_name=MODEL, frame_id=6)
        assert stub.GenerateInference(request, metadata=metadata, timeout=10 * TIME_UNIT).success
    spans = sink.wait_for_spans(lambda spans: len(spans) >= 5, 20 * TIME_UNIT, trace_id=trace_id)
    (server_span,) = [s for s in spans if s.kind == SERVER_KIND]
    assert server_span.name == "/optimized_lipsyncsrv.OptimizedLipSyncService/GenerateInference"
    assert {s.name for s in spans if s.parent_span_id == server_span.span_id} == set(STAGES)


def test_health_checks_and_reflection_produce_no_spans(servers: Servers, sink: SinkProcess) -> None:
    with grpc.insecure_channel(servers.traced.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "lipsync.v1.LipSync"):
            health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5 * TIME_UNIT)
        seed_stub = optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceStub(channel)
        seed_stub.HealthCheck(seed.HealthRequest(), timeout=5 * TIME_UNIT)
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        list(reflection.ServerReflectionInfo(iter([listing]), timeout=5 * TIME_UNIT))
        # A traced call after them: once its spans are in, theirs would have been exported before.
        trace_id, _, metadata = new_traceparent()
        lipsync_pb2_grpc.LipSyncStub(channel).ListModels(
            pb.ListModelsRequest(), metadata=metadata, timeout=5 * TIME_UNIT
        )
    sink.wait_for_spans(bool, 20 * TIME_UNIT, trace_id=trace_id)
    names = {span.name for span in sink.spans(service="lipsync-server")}
    assert "/lipsync.v1.LipSync/ListModels" in names
    probes = {name for name in names if "Health" in name or "Reflection" in name}
    assert probes == set(), "health checks (also those of wait_serving) and reflection are not traced"


def test_with_the_collector_down_requests_succeed_at_normal_speed(servers: Servers) -> None:
    """Requests alternate between a server exporting to a closed port and one not tracing at all."""
    timings: dict[str, list[float]] = {"collector_down": [], "untraced": []}
    channels = {name: stub(getattr(servers, name)) for name in timings}
    try:
        for frame_id in range(40):
            for name, (_, lipsync) in channels.items():
                start = time.perf_counter()
                reply = lipsync.Infer(
                    pb.InferRequest(model_name=MODEL, frame_id=frame_id % 12), timeout=10 * TIME_UNIT
                )
                timings[name].append(time.perf_counter() - start)
                assert reply.image[:2] == b"\xff\xd8"
    finally:
        for channel, _ in channels.values():
            channel.close()
    down, untraced = (statistics.median(timings[name]) for name in ("collector_down", "untraced"))
    # A request waiting on the exporter would wait for its timeout (2 s) or a retry back-off (0.8 s or
    # more), not milliseconds: generous bounds still catch it, and ride out a busy machine.
    assert down < 2 * untraced + 0.01 * TIME_UNIT, f"median {down * 1000:.1f} ms vs {untraced * 1000:.1f} ms"
    assert max(timings["collector_down"]) < 0.75 * TIME_UNIT
    servers.collector_down.stop()
    # JSON lines are the server's own; grpc's C core writes plain text beside them.
    lines = [line for line in servers.collector_down.output().splitlines() if line.startswith("{")]
    exporter_logs = [
        entry for entry in map(json.loads, lines) if entry["logger"].startswith("opentelemetry.exporter")
    ]
    assert exporter_logs, "the server did try to export, and said it failed"
