from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from span_recording import SpanRecorder

from lipsync_server.tracing_interceptor import ServerInterceptor

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = (("traceparent", f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"),)
MANY = 100_000
Context = grpc.aio.ServicerContext[bytes, bytes]
Streaming = grpc.aio.UnaryStreamMultiCallable[bytes, bytes]


class Handlers:
    """A tiny bytes-in, bytes-out service; every handler notes the span current while it runs."""

    def __init__(self) -> None:
        self.current: list[trace.Span] = []

    async def echo(self, request: bytes, context: Context) -> bytes:
        self.current.append(trace.get_current_span())
        return request

    async def count(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            self.current.append(trace.get_current_span())
            await asyncio.sleep(0)
            yield b"%d" % i

    async def flood(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        """Never waits between messages: a cancel finds it suspended at a `yield`."""
        for _ in range(MANY):
            yield bytes(1024)

    async def abort(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        yield b"one"
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad second message")

    async def crash(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        yield b"one"
        raise RuntimeError("handler bug")


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
async def channel(recorder: SpanRecorder) -> AsyncIterator[tuple[grpc.aio.Channel, Handlers]]:
    handlers = Handlers()
    server = grpc.aio.server(interceptors=[ServerInterceptor(recorder.provider, lambda details: True)])
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Echo": grpc.unary_unary_rpc_method_handler(handlers.echo),
        "Count": grpc.unary_stream_rpc_method_handler(handlers.count),
        "Flood": grpc.unary_stream_rpc_method_handler(handlers.flood),
        "Abort": grpc.unary_stream_rpc_method_handler(handlers.abort),
        "Crash": grpc.unary_stream_rpc_method_handler(handlers.crash),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Stub", methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as client:
        yield client, handlers
    await server.stop(0)


def hex_ids(span: ReadableSpan) -> tuple[str, str | None]:
    parent = None if span.parent is None else trace.format_span_id(span.parent.span_id)
    return trace.format_trace_id(span.context.trace_id), parent


async def wait_for_span(recorder: SpanRecorder, name: str) -> ReadableSpan:
    """The span `name` once it has ended (an abandoned stream's span ends when asyncio closes it)."""
    for _ in range(200):
        spans = recorder.named(name)
        if spans:
            return spans[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no span {name!r} ended; spans: {[s.name for s in recorder.spans()]}")


def status_code(span: ReadableSpan) -> object:
    assert span.attributes is not None
    return span.attributes["rpc.grpc.status_code"]


async def test_a_unary_call_keeps_the_librarys_span_which_continues_the_callers_trace(
    recorder: SpanRecorder, channel: tuple[grpc.aio.Channel, Handlers]
) -> None:
    client, handlers = channel
    echo: Callable[..., grpc.aio.UnaryUnaryCall[bytes, bytes]] = client.unary_unary("/test.Stub/Echo")
    assert await echo(b"hi", metadata=TRACEPARENT) == b"hi"
    span = await wait_for_span(recorder, "/test.Stub/Echo")
    assert span.kind is SpanKind.SERVER
    assert hex_ids(span) == (TRACE_ID, CLIENT_SPAN_ID)
    assert [current.get_span_context() for current in handlers.current] == [span.context]


async def test_a_stream_has_one_server_span_current_in_every_step_of_its_handler(
    recorder: SpanRecorder, channel: tuple[grpc.aio.Channel, Handlers]
) -> None:
    client, handlers = channel
    count: Streaming = client.unary_stream("/test.Stub/Count")
    replies = [reply async for reply in count(b"3", metadata=TRACEPARENT)]
    assert replies == [b"0", b"1", b"2"]
    span = await wait_for_span(recorder, "/test.Stub/Count")
    assert span.kind is SpanKind.SERVER
    assert hex_ids(span) == (TRACE_ID, CLIENT_SPAN_ID)
    assert span.attributes is not None
    assert (span.attributes["rpc.service"], span.attributes["rpc.method"]) == ("test.Stub", "Count")
    assert status_code(span) == grpc.StatusCode.OK.value[0]
    assert span.status.status_code is StatusCode.UNSET
    assert [current.get_span_context() for current in handlers.current] == [span.context] * 3
    assert trace.get_current_span() is trace.INVALID_SPAN, "nothing stays attached in the caller"


async def test_a_stream_cancelled_mid_flight_ends_its_span_without_a_context_error(
    recorder: SpanRecorder,
    channel: tuple[grpc.aio.Channel, Handlers],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = channel
    flood: Streaming = client.unary_stream("/test.Stub/Flood")
    call = flood(b"")
    for _ in range(5):
        await call.read()
    call.cancel()
    span = await wait_for_span(recorder, "/test.Stub/Flood")
    assert status_code(span) == grpc.StatusCode.CANCELLED.value[0]
    await asyncio.sleep(0.05)  # let any late finalizer log
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "the library's interceptor logs 'Failed to detach context' here"


async def test_an_aborted_stream_records_the_code_it_was_aborted_with(
    recorder: SpanRecorder, channel: tuple[grpc.aio.Channel, Handlers]
) -> None:
    client, _ = channel
    abort: Streaming = client.unary_stream("/test.Stub/Abort")
    call = abort(b"")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        _ = [reply async for reply in call]
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    span = await wait_for_span(recorder, "/test.Stub/Abort")
    assert status_code(span) == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # The caller's mistake, not the server's: semantic conventions leave the status unset.
    assert span.status.status_code is StatusCode.UNSET


async def test_a_stream_handler_that_raises_ends_its_span_as_an_error_with_the_exception(
    recorder: SpanRecorder, channel: tuple[grpc.aio.Channel, Handlers]
) -> None:
    client, _ = channel
    crash: Streaming = client.unary_stream("/test.Stub/Crash")
    call = crash(b"")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        _ = [reply async for reply in call]
    assert error.value.code() is grpc.StatusCode.UNKNOWN
    span = await wait_for_span(recorder, "/test.Stub/Crash")
    assert status_code(span) == grpc.StatusCode.UNKNOWN.value[0]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: handler bug"
    assert [event.name for event in span.events] == ["exception"]
