"""The proxy's request and session spans, from the app built in-process in front of the in-process
double, recorded in memory."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_protocol import v2
from lipsync_protocol.fields import OutputMode
from lipsync_proxy import spans
from lipsync_proxy.app import Dependencies, ProxyApp, create_app
from lipsync_proxy.settings import Settings

from .doubles import DoubleConfig, RunningDouble, start_double
from .processes import v1_request
from .span_recording import SpanRecorder

PAYLOAD_SIZE = 1000
INFER = "/lipsync.v1.LipSync/Infer"


@dataclass
class Stack:
    app: ProxyApp
    double: RunningDouble
    recorder: SpanRecorder | None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.app.port}/ws"

    @property
    def recorded(self) -> SpanRecorder:
        assert self.recorder is not None
        return self.recorder


async def start_stack(recorder: SpanRecorder | None) -> Stack:
    # Frame f takes f ms: frame 2000 is slow enough to be cancelled.
    double = await start_double(
        0, DoubleConfig(frames=3000, delay_s_per_frame=0.001, payload_size=PAYLOAD_SIZE)
    )
    settings = Settings(
        ws_port=0, host="127.0.0.1", grpc_addr=double.address, static_dir=None, grace_period_s=1
    )
    provider = None if recorder is None else recorder.provider
    app = await create_app(settings, Dependencies(tracer_provider=provider))
    return Stack(app, double, recorder)


@pytest.fixture
async def traced() -> AsyncIterator[Stack]:
    stack = await start_stack(SpanRecorder())
    yield stack
    await stack.app.shutdown()
    await stack.double.server.stop(None)


@pytest.fixture
async def untraced() -> AsyncIterator[Stack]:
    stack = await start_stack(None)
    yield stack
    await stack.app.shutdown()
    await stack.double.server.stop(None)


def new_traceparent() -> tuple[str, str, str]:
    """A sampled W3C traceparent of a fresh trace: its trace id, its parent span id, and itself."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


def only(found: list[ReadableSpan]) -> ReadableSpan:
    assert len(found) == 1, [span.name for span in found]
    return found[0]


def attributes_of(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def assert_carried(stack: Stack, span: ReadableSpan) -> None:
    """A call to the backend carried `span`'s context: the server's spans are its children."""
    context = span.context
    assert f"00-{context.trace_id:032x}-{context.span_id:016x}-01" in stack.double.servicer.traceparents


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)


async def test_a_v1_request_is_one_server_span_whose_context_its_grpc_call_carries(traced: Stack) -> None:
    async with connect(traced.url) as ws:
        await ws.send(v1_request("demo", 7))
        reply = await recv(ws)
    assert len(reply) == PAYLOAD_SIZE
    request = only(traced.recorded.named("ws v1_frame"))
    assert request.kind == SpanKind.SERVER
    assert request.parent is None, "without a client traceparent the proxy starts the trace"
    assert attributes_of(request) == {
        spans.MODEL: "demo",
        spans.FRAME_ID: 7,
        spans.OUTPUT_MODE: "full_frame",
        spans.REPLY_BYTES: PAYLOAD_SIZE,
        spans.CODE: "OK",
    }
    assert_carried(traced, request)
    assert traced.recorded.named(INFER) == [], "the call has no span of its own"


async def test_a_json_inference_continues_the_clients_traceparent(traced: Stack) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    message = {"model_name": "demo", "frame_id": 3, "output_mode": "face_crop", "traceparent": traceparent}
    async with connect(traced.url) as ws:
        await ws.send(json.dumps(message))
        reply = await recv(ws)
    assert json.loads(reply)["success"] is True
    request = only(traced.recorded.named("ws inference"))
    assert request.parent is not None
    assert (f"{request.context.trace_id:032x}", f"{request.parent.span_id:016x}") == (trace_id, parent_id)
    assert attributes_of(request) | {spans.REPLY_BYTES: 0} == {
        spans.MODEL: "demo",
        spans.FRAME_ID: 3,
        spans.OUTPUT_MODE: "face_crop",
        spans.REPLY_BYTES: 0,
        spans.CODE: "OK",
    }
    assert attributes_of(request)[spans.REPLY_BYTES] == len(reply)
    assert_carried(traced, request)


async def test_a_request_the_client_got_wrong_says_its_code_without_an_error_status(traced: Stack) -> None:
    async with connect(traced.url) as ws:
        await ws.send(json.dumps({"type": "get_video_frame", "model_name": "demo", "frame_id": 5000}))
        assert json.loads(await recv(ws))["code"] == "OUT_OF_RANGE"
    request = only(traced.recorded.named("ws get_video_frame"))
    assert attributes_of(request)[spans.CODE] == "OUT_OF_RANGE"
    assert (attributes_of(request)[spans.MODEL], attributes_of(request)[spans.FRAME_ID]) == ("demo", 5000)
    assert request.status.status_code == StatusCode.UNSET


async def test_a_backend_that_is_gone_makes_an_error_span(traced: Stack) -> None:
    await traced.double.server.stop(None)
    async with connect(traced.url) as ws:
        await ws.send(json.dumps({"type": "list_models"}))
        assert json.loads(await recv(ws))["code"] == "UNAVAILABLE"
    request = only(traced.recorded.named("ws list_models"))
    assert attributes_of(request)[spans.CODE] == "UNAVAILABLE"
    assert request.status.status_code == StatusCode.ERROR


async def test_a_v2_infer_continues_the_clients_traceparent(traced: Stack) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    infer = v2.InferRequest(4, "demo", 9, output_mode=OutputMode.FACE_CROP, traceparent=traceparent)
    async with connect(traced.url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(infer))
        reply = await recv(ws)
    assert isinstance(v2.decode_server(reply), v2.FrameReply)  # type: ignore[arg-type]
    request = only(traced.recorded.named("ws v2_infer"))
    assert request.parent is not None
    assert (f"{request.context.trace_id:032x}", f"{request.parent.span_id:016x}") == (trace_id, parent_id)
    assert attributes_of(request)[spans.OUTPUT_MODE] == "face_crop"
    assert attributes_of(request)[spans.REPLY_BYTES] == len(reply)
    assert_carried(traced, request)


async def test_a_cancelled_v2_infer_ends_its_span_cancelled(traced: Stack) -> None:
    async with connect(traced.url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.InferRequest(5, "demo", 2000)))
        await eventually(
            lambda: traced.double.servicer.active["Infer"] == 1, "the call at the backend", within_s=2.0
        )
        await ws.send(v2.encode_client(v2.Cancel(5)))
        assert v2.decode_server(await recv(ws)) == v2.ErrorReply(5, "CANCELLED", "cancelled by the client")  # type: ignore[arg-type]
        await eventually(
            lambda: bool(traced.recorded.named("ws v2_infer")), "the request's span", within_s=2.0
        )
    request = only(traced.recorded.named("ws v2_infer"))
    assert attributes_of(request)[spans.CODE] == "CANCELLED"
    assert request.status.status_code == StatusCode.UNSET
    assert_carried(traced, request)


async def test_a_v2_session_is_one_span_over_its_speak_stream(traced: Stack) -> None:
    trace_id, parent_id, traceparent = new_traceparent()
    async with connect(traced.url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(7, "demo", 12, credits=100, traceparent=traceparent)))
        await ws.send(v2.encode_client(v2.SessionAudio(7, bytes(640 * 2 * 3))))
        await ws.send(v2.encode_client(v2.SessionControl(7, v2.SessionAction.END)))
        received: list[v2.ServerMessage] = []
        while not received or not isinstance(received[-1], v2.SessionEnd):
            received.append(v2.decode_server(await recv(ws)))  # type: ignore[arg-type]
    assert received[-1] == v2.SessionEnd(7, "OK", "")
    await eventually(lambda: bool(traced.recorded.named("ws v2_session")), "the session's span", within_s=2.0)
    session = only(traced.recorded.named("ws v2_session"))
    assert session.parent is not None
    assert (f"{session.context.trace_id:032x}", f"{session.parent.span_id:016x}") == (trace_id, parent_id)
    attributes = attributes_of(session)
    assert attributes[spans.FRAME_ID] == 12
    assert (attributes[spans.FRAMES_REQUESTED], attributes[spans.FRAMES_DELIVERED]) == (4, 4)
    assert attributes[spans.CODE] == "OK"
    assert int(str(attributes[spans.REPLY_BYTES])) > 4 * PAYLOAD_SIZE
    assert_carried(traced, session)
    metrics = traced.app.state.metrics.registry
    assert metrics.get_sample_value("lipsync_proxy_session_frames_requested_total") == 4
    assert metrics.get_sample_value("lipsync_proxy_session_frames_delivered_total") == 4
    assert metrics.get_sample_value("lipsync_proxy_session_delivered_ratio_bucket", {"le": "0.99"}) == 0
    assert metrics.get_sample_value("lipsync_proxy_session_delivered_ratio_count") == 1


async def test_pings_malformed_messages_and_the_model_refresh_make_no_span(traced: Stack) -> None:
    await eventually(
        lambda: traced.app.monitor.loaded_models == 1, "the monitor's model refresh", within_s=2.0
    )
    async with connect(traced.url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await recv(ws))["type"] == "pong"
        await ws.send(b"\x00")
        assert json.loads(await recv(ws))["code"] == "INVALID_ARGUMENT"
    assert traced.recorded.spans() == []


@pytest.fixture
def no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to make a request or session span."""

    def refuse(*args: object) -> None:
        raise AssertionError("a span was made with tracing off")

    monkeypatch.setattr(spans, "request_span", refuse)
    monkeypatch.setattr(spans, "traced", refuse)


@pytest.mark.usefixtures("no_spans")
async def test_with_tracing_off_no_request_makes_a_span(untraced: Stack) -> None:
    async with connect(untraced.url) as ws:
        await ws.send(v1_request("demo", 1))
        assert len(await recv(ws)) == PAYLOAD_SIZE
        await ws.send(json.dumps({"model_name": "demo", "frame_id": 2, "traceparent": new_traceparent()[2]}))
        assert json.loads(await recv(ws))["success"] is True
    async with connect(untraced.url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.InferRequest(1, "demo", 3)))
        assert isinstance(v2.decode_server(await recv(ws)), v2.FrameReply)  # type: ignore[arg-type]
        await ws.send(v2.encode_client(v2.SessionStart(2, "demo", credits=10)))
        await ws.send(v2.encode_client(v2.SessionControl(2, v2.SessionAction.END)))
        while not isinstance(v2.decode_server(await recv(ws)), v2.SessionEnd):  # type: ignore[arg-type]
            pass
