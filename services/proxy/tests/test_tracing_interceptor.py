"""The gRPC client spans of the proxy's calls, against the in-process double backend."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from lipsync_common.waiting import TIME_UNIT
from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc
from lipsync_proxy.tracing_interceptor import client_interceptors

from .doubles import DoubleConfig, RunningDouble, start_double
from .span_recording import SpanRecorder

INFER = "/lipsync.v1.LipSync/Infer"
SPEAK = "/lipsync.v1.LipSync/Speak"
CANCELLED = grpc.StatusCode.CANCELLED.value[0]


@pytest.fixture
async def double() -> AsyncIterator[RunningDouble]:
    # Frame f takes f * 10 ms: frame 1000 runs long enough to be cancelled.
    running = await start_double(0, DoubleConfig(frames=2000, delay_s_per_frame=0.01, payload_size=64))
    yield running
    await running.server.stop(None)


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
async def stub(double: RunningDouble, recorder: SpanRecorder) -> AsyncIterator[lipsync_pb2_grpc.LipSyncStub]:
    channel = grpc.aio.insecure_channel(double.address, interceptors=client_interceptors(recorder.provider))
    yield lipsync_pb2_grpc.LipSyncStub(channel)
    await channel.close()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(200 * TIME_UNIT)):
        if condition():
            return
        gc.collect()  # an abandoned stream's iterator ends its span when it is collected
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not within {2 * TIME_UNIT:.0f} s")


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]


def test_tracing_off_installs_no_interceptor() -> None:
    assert client_interceptors(None) == []


async def test_a_call_inside_a_span_gets_a_client_span_as_its_child(
    stub: lipsync_pb2_grpc.LipSyncStub, recorder: SpanRecorder
) -> None:
    with recorder.provider.get_tracer("test").start_as_current_span("request") as request:
        await stub.Infer(lipsync_pb2.InferRequest(model_name="demo", frame_id=1), timeout=5 * TIME_UNIT)
    call = only(recorder.named(INFER))
    assert call.kind == SpanKind.CLIENT
    assert call.parent is not None
    assert call.parent.span_id == request.get_span_context().span_id
    assert call.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == 0
    assert call.attributes["rpc.method"] == "Infer"


async def test_a_call_outside_any_span_gets_none(
    stub: lipsync_pb2_grpc.LipSyncStub, recorder: SpanRecorder
) -> None:
    await stub.ListModels(lipsync_pb2.ListModelsRequest(), timeout=5 * TIME_UNIT)
    assert recorder.spans() == []


async def test_a_failed_call_ends_its_span_with_the_status(
    stub: lipsync_pb2_grpc.LipSyncStub, recorder: SpanRecorder
) -> None:
    with (
        recorder.provider.get_tracer("test").start_as_current_span("request"),
        pytest.raises(grpc.aio.AioRpcError),
    ):
        await stub.Infer(lipsync_pb2.InferRequest(model_name="demo", frame_id=5000), timeout=5 * TIME_UNIT)
    call = only(recorder.named(INFER))
    assert call.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OUT_OF_RANGE.value[0]
    assert call.status.status_code == StatusCode.ERROR


async def test_a_cancelled_call_is_cancelled_at_the_server_and_its_span_ends(
    stub: lipsync_pb2_grpc.LipSyncStub, recorder: SpanRecorder, double: RunningDouble
) -> None:
    async def request() -> None:
        with recorder.provider.get_tracer("test").start_as_current_span("request"):
            await stub.Infer(lipsync_pb2.InferRequest(model_name="demo", frame_id=1000), timeout=30)

    task = asyncio.create_task(request())
    await eventually(lambda: double.servicer.active["Infer"] == 1, "the call at the backend")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: double.servicer.cancelled["Infer"] == 1, "the backend seeing the cancellation")
    call = only(recorder.named(INFER))
    assert call.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == CANCELLED


def speak_start() -> lipsync_pb2.SpeakRequest:
    return lipsync_pb2.SpeakRequest(start=lipsync_pb2.SpeakStart(model_name="demo"))


def speak_audio(frames: int) -> lipsync_pb2.SpeakRequest:
    # The double makes one frame per 640 samples of PCM16.
    return lipsync_pb2.SpeakRequest(audio=bytes(640 * 2 * frames))


async def test_a_stream_read_to_its_end_ends_its_span_with_it(
    stub: lipsync_pb2_grpc.LipSyncStub, recorder: SpanRecorder
) -> None:
    with recorder.provider.get_tracer("test").start_as_current_span("session") as session:
        call = stub.Speak(timeout=5 * TIME_UNIT)
        await call.write(speak_start())
        await call.write(speak_audio(2))
        end = lipsync_pb2.SpeakControl(action=lipsync_pb2.SpeakControl.ACTION_END)
        await call.write(lipsync_pb2.SpeakRequest(control=end))
        await call.done_writing()
        responses = []
        while not isinstance(response := await call.read(), type(grpc.aio.EOF)):
            responses.append(response)
        assert recorder.named(SPEAK) != [], "ended once the stream has"
    assert [response.sequence for response in responses] == [0, 1, 2]
    stream = only(recorder.named(SPEAK))
    assert stream.parent is not None
    assert stream.parent.span_id == session.get_span_context().span_id
    assert stream.attributes is not None
    assert stream.attributes["rpc.grpc.status_code"] == 0


async def test_a_stream_left_between_two_reads_ends_its_span_cancelled(
    stub: lipsync_pb2_grpc.LipSyncStub, recorder: SpanRecorder
) -> None:
    with recorder.provider.get_tracer("test").start_as_current_span("session"):
        call = stub.Speak(timeout=5 * TIME_UNIT)
        await call.write(speak_start())
        await call.write(speak_audio(3))
        await call.read()
        call.cancel()
        del call
    await eventually(lambda: bool(recorder.named(SPEAK)), "the stream's span")
    stream = only(recorder.named(SPEAK))
    assert stream.attributes is not None
    assert stream.attributes["rpc.grpc.status_code"] == CANCELLED
