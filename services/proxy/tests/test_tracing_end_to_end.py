"""One trace from the proxy's WebSocket request to the server's JPEG encoder: the real proxy and the real
server exporting over OTLP/gRPC to the real sink process."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from lipsync_otlp_sink.process import SinkProcess
from lipsync_otlp_sink.store import SpanRecord
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT, wait_until
from lipsync_protocol import v2

from .processes import DoubleProcess, ProxyProcess, ServerProcess, http_get, v1_request

pytestmark = pytest.mark.integration

PROXY, SERVER = "lipsync-proxy", "lipsync-server"
SERVER_KIND = 2  # OTLP's SPAN_KIND_SERVER
INFER = "/lipsync.v1.LipSync/Infer"
SPEAK = "/lipsync.v1.LipSync/Speak"
STAGES = ("audio_features", "inference", "composite", "encode")
# Spans reach the sink within a few schedule delays of their end.
EXPORTING = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkProcess]:
    process = SinkProcess().start()
    try:
        process.wait_ready(20 * TIME_UNIT)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def traced_proxy(sink: SinkProcess, logs_dir: Path, demo_cache: Path) -> Iterator[ProxyProcess]:
    """The proxy in front of the real server, both exporting to the sink; the proxy logs JSON."""
    env = EXPORTING | {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
    server = ServerProcess(logs_dir, cache_dir=demo_cache, env=env)
    server.start().wait_ready(120 * TIME_UNIT)
    args = ["--log-format", "json", "--log-level", "info"]
    proxy = ProxyProcess(logs_dir, grpc_addr=server.address, args=args, env=env)
    try:
        proxy.start().wait_ready(20 * TIME_UNIT)
        wait_until(lambda: proxy.health().status == 200, 10 * TIME_UNIT, "the proxy's /health 200")
        yield proxy
    finally:
        proxy.stop()
        server.stop()


def new_traceparent() -> tuple[str, str, str]:
    """A sampled W3C traceparent of a fresh trace: its trace id, its parent span id, and itself."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)


def one(spans: list[SpanRecord], name: str, service: str) -> SpanRecord:
    found = [span for span in spans if span.name == name and span.service == service]
    assert len(found) == 1, f"{name} of {service}: {found}"
    return found[0]


def trace_of(sink: SinkProcess, trace_id: str, count: int) -> list[SpanRecord]:
    """The spans of one trace once `count` have arrived; fails if more arrive."""
    spans = sink.wait_for_spans(lambda spans: len(spans) >= count, 20 * TIME_UNIT, trace_id=trace_id)
    assert len(spans) == count, sorted(f"{span.service} {span.name}" for span in spans)
    return spans


def assert_request_chain(spans: list[SpanRecord], request: SpanRecord, frame_id: int) -> None:
    """request → gRPC server Infer → the four stages of `frame_id`, all one trace."""
    server = one(spans, INFER, SERVER)
    assert (request.kind, server.kind) == (SERVER_KIND, SERVER_KIND)
    assert server.parent_span_id == request.span_id
    assert request.start_unix_nano <= server.start_unix_nano <= server.end_unix_nano <= request.end_unix_nano
    assert server.attributes["lipsync.model"] == "demo"
    stages = {span.name: span for span in spans if span.service == SERVER and span.name in STAGES}
    assert sorted(stages) == sorted(STAGES)
    for stage in stages.values():
        assert stage.parent_span_id == server.span_id
        assert stage.attributes["lipsync.frame_id"] == frame_id
    assert {span.trace_id for span in spans} == {request.trace_id}


def test_one_v1_request_is_one_trace_from_the_proxy_to_the_jpeg_encoder(
    traced_proxy: ProxyProcess, sink: SinkProcess
) -> None:
    async def request() -> bytes:
        async with connect(traced_proxy.ws_url, max_size=None) as ws:
            await ws.send(v1_request("demo", 41))
            reply = await recv(ws)
        assert isinstance(reply, bytes)
        return reply

    image = asyncio.run(request())

    def ours(spans: list[SpanRecord]) -> list[SpanRecord]:
        return [s for s in spans if s.name == "ws v1_frame" and s.attributes.get("lipsync.frame_id") == 41]

    (found,) = ours(sink.wait_for_spans(lambda spans: bool(ours(spans)), 20 * TIME_UNIT, service=PROXY))
    spans = trace_of(sink, found.trace_id, 2 + len(STAGES))
    request_span = one(spans, "ws v1_frame", PROXY)
    assert request_span.parent_span_id == "", "without a client traceparent the proxy starts the trace"
    assert request_span.attributes == {
        "lipsync.model": "demo",
        "lipsync.frame_id": 41,
        "lipsync.output_mode": "full_frame",
        "lipsync.reply_bytes": len(image),
        "lipsync.code": "OK",
    }
    assert_request_chain(spans, request_span, 41)
    # The proxy's JSON log line of the frame carries the request span's ids.
    lines = [json.loads(line) for line in traced_proxy.output().splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line["message"].startswith("demo frame 41:")]
    assert (logged["trace_id"], logged["span_id"]) == (request_span.trace_id, request_span.span_id)


def test_a_json_request_with_a_traceparent_joins_the_clients_trace(
    traced_proxy: ProxyProcess, sink: SinkProcess
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()

    async def request() -> None:
        async with connect(traced_proxy.ws_url, max_size=None) as ws:
            await ws.send(json.dumps({"model_name": "demo", "frame_id": 42, "traceparent": traceparent}))
            assert json.loads(await recv(ws))["success"] is True

    asyncio.run(request())
    spans = trace_of(sink, trace_id, 2 + len(STAGES))
    request_span = one(spans, "ws inference", PROXY)
    assert request_span.parent_span_id == parent_id
    assert_request_chain(spans, request_span, 42)


def test_a_v2_infer_with_a_traceparent_joins_the_clients_trace(
    traced_proxy: ProxyProcess, sink: SinkProcess
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    infer = v2.InferRequest(1, "demo", 43, output_mode=v2.OutputMode.FACE_CROP, traceparent=traceparent)

    async def request() -> None:
        async with connect(traced_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
            await ws.send(v2.encode_client(infer))
            assert isinstance(v2.decode_server(await recv(ws)), v2.FrameReply)  # type: ignore[arg-type]

    asyncio.run(request())
    spans = trace_of(sink, trace_id, 2 + len(STAGES))
    request_span = one(spans, "ws v2_infer", PROXY)
    assert request_span.parent_span_id == parent_id
    assert request_span.attributes["lipsync.output_mode"] == "face_crop"
    assert_request_chain(spans, request_span, 43)


def test_a_v2_session_with_a_traceparent_is_one_trace_through_the_speak_stream(
    traced_proxy: ProxyProcess, sink: SinkProcess
) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    # 0.3 s of a tone: a few frames at the demo's 25 fps.
    tone = (np.sin(np.arange(4800) * 2 * np.pi * 220 / 16_000) * 8000).astype("<i2").tobytes()

    async def session() -> int:
        async with connect(traced_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
            await ws.send(v2.encode_client(v2.SessionStart(9, "demo", credits=1000, traceparent=traceparent)))
            await ws.send(v2.encode_client(v2.SessionAudio(9, tone)))
            await ws.send(v2.encode_client(v2.SessionControl(9, v2.SessionAction.END)))
            frames = 0
            while not isinstance(message := v2.decode_server(await recv(ws)), v2.SessionEnd):  # type: ignore[arg-type]
                frames += isinstance(message, v2.SessionFrame)
            assert message.code == "OK"
            return frames

    frames = asyncio.run(session())
    assert frames >= 3

    def complete(spans: list[SpanRecord]) -> bool:
        names = [(span.service, span.name) for span in spans]
        expected = {(PROXY, "ws v2_session"), (SERVER, SPEAK)}
        return expected <= set(names) and names.count((SERVER, "encode")) >= frames

    spans = sink.wait_for_spans(complete, 20 * TIME_UNIT, trace_id=trace_id)
    session_span = one(spans, "ws v2_session", PROXY)
    assert session_span.parent_span_id == parent_id
    assert session_span.attributes["lipsync.frames_requested"] == frames
    assert session_span.attributes["lipsync.frames_delivered"] == frames
    server = one(spans, SPEAK, SERVER)
    assert server.parent_span_id == session_span.span_id
    assert not [span for span in spans if span.service == PROXY and span.name == SPEAK]
    encodes = [span for span in spans if span.name == "encode" and span.parent_span_id == server.span_id]
    assert len(encodes) == frames


def test_health_checks_and_the_model_refresh_produce_no_spans(
    traced_proxy: ProxyProcess, sink: SinkProcess
) -> None:
    # The proxy watches the server's health from its start, and lists its models once it is SERVING.
    wait_until(
        lambda: traced_proxy.health().json()["loaded_models"] == 1, 10 * TIME_UNIT, "the model refresh"
    )  # type: ignore[index]
    for path in ("/health", "/healthz", "/readyz"):
        assert http_get(traced_proxy.port, path).status == 200
    trace_id, _, traceparent = new_traceparent()

    async def request() -> None:
        async with connect(traced_proxy.ws_url) as ws:
            await ws.send(json.dumps({"model_name": "demo", "frame_id": 44, "traceparent": traceparent}))
            assert json.loads(await recv(ws))["success"] is True

    # A traced request after them: once its spans are in, theirs would have been exported before.
    asyncio.run(request())
    trace_of(sink, trace_id, 2 + len(STAGES))
    names = {(span.service, span.name) for span in sink.spans()}
    assert (PROXY, "ws inference") in names
    probes = {(service, name) for service, name in names if "Health" in name or "ListModels" in name}
    assert probes == set(), "the health watch and the model refresh are not traced, nor are /health*"
    assert {service for service, _ in names} == {PROXY, SERVER}


def test_with_the_collector_down_requests_succeed_at_normal_speed(
    double: DoubleProcess, logs_dir: Path
) -> None:
    """Requests alternate between a proxy exporting to a closed port and one not tracing at all, both in
    front of the same backend."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = EXPORTING | {"OTEL_EXPORTER_OTLP_ENDPOINT": closed}
    proxies = {
        "collector_down": ProxyProcess(
            logs_dir, grpc_addr=double.address, args=["--log-format", "json"], env=env
        ),
        "untraced": ProxyProcess(logs_dir, grpc_addr=double.address),
    }
    for proxy in proxies.values():
        proxy.start()
    try:
        for proxy in proxies.values():
            proxy.wait_ready(20 * TIME_UNIT)
            wait_until(lambda proxy=proxy: proxy.health().status == 200, 10 * TIME_UNIT, "/health 200")  # type: ignore[misc]
        timings = asyncio.run(alternate(proxies, requests=40))
    finally:
        for proxy in proxies.values():
            proxy.stop()
    down, untraced = (statistics.median(timings[name]) for name in ("collector_down", "untraced"))
    # A request waiting on the exporter would wait for its timeout (2 s) or a retry back-off (about 1 s),
    # not milliseconds: generous bounds still catch that, and ride out a busy machine.
    assert down < 2 * untraced + 0.01 * TIME_UNIT, f"median {down * 1000:.1f} ms vs {untraced * 1000:.1f} ms"
    assert max(timings["collector_down"]) < 0.75 * TIME_UNIT
    lines = [
        json.loads(line) for line in proxies["collector_down"].output().splitlines() if line.startswith("{")
    ]
    assert any(line["logger"].startswith("opentelemetry.exporter") for line in lines), (
        "the proxy did try to export, and said it failed"
    )


async def alternate(proxies: dict[str, ProxyProcess], requests: int) -> dict[str, list[float]]:
    """Seconds each v1 request took, per proxy, sending one request to each in turn."""
    timings: dict[str, list[float]] = {name: [] for name in proxies}
    connections = {name: await connect(proxy.ws_url) for name, proxy in proxies.items()}
    try:
        for frame_id in range(requests):
            for name, ws in connections.items():
                started = time.perf_counter()
                await ws.send(v1_request("demo", frame_id % 5))
                reply = await recv(ws)
                timings[name].append(time.perf_counter() - started)
                assert isinstance(reply, bytes)
    finally:
        for ws in connections.values():
            await ws.close()
    return timings
