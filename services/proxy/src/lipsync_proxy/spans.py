"""The proxy's own spans: one per WebSocket request and one per v2 session, each the parent of what its
gRPC call does (docs/observability.md lists them and their attributes).

Made only while tracing is on: callers check `ProxyState.tracer` first, so that with tracing off a
request creates no span object at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from websockets.exceptions import ConnectionClosed

from lipsync_protocol.fields import OutputMode

# The attributes of the proxy's spans.
MODEL = "lipsync.model"
FRAME_ID = "lipsync.frame_id"
OUTPUT_MODE = "lipsync.output_mode"
REPLY_BYTES = "lipsync.reply_bytes"
CODE = "lipsync.code"
FRAMES_REQUESTED = "lipsync.frames_requested"
FRAMES_DELIVERED = "lipsync.frames_delivered"

OK = "OK"
CANCELLED = "CANCELLED"
# Codes that are the proxy's or a backend's fault set the span's status to ERROR; the client's own
# mistakes (INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, ...) only set lipsync.code, as on the server.
_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "DATA_LOSS"})
_W3C = TraceContextTextMapPropagator()

SizedReply = TypeVar("SizedReply", bound=str | bytes | memoryview)


def frame_attributes(model_name: str, frame_id: int, output_mode: OutputMode) -> dict[str, AttributeValue]:
    """The attributes of a request for a frame, known once it is decoded. (Which protocol it came in is
    the span's name: `ws v1_frame` v1, `ws v2_*` v2, any other JSON.)"""
    return {MODEL: model_name, FRAME_ID: frame_id, OUTPUT_MODE: output_mode.value}


def set_code(span: Span, code: str) -> None:
    """Record how the request ended: `OK` or a gRPC status name."""
    span.set_attribute(CODE, code)
    if code in _FAULTS:
        span.set_status(Status(StatusCode.ERROR, code))


def reply_size(reply: str | bytes | memoryview) -> int:
    """The size in bytes of a WebSocket reply (a text message is sent as UTF-8)."""
    if isinstance(reply, str):
        return len(reply) if reply.isascii() else len(reply.encode())
    return reply.nbytes if isinstance(reply, memoryview) else len(reply)


def start(
    tracer: Tracer,
    name: str,
    started: float,
    traceparent: str | None,
    attributes: Mapping[str, AttributeValue],
) -> Span:
    """A SERVER span `ws <name>` from `started` (the `time.perf_counter()` at which the request was
    read); a client's W3C `traceparent` makes it a child of the client's span, in the client's trace.
    Whether it is recorded is the sampler's choice (`OTEL_TRACES_SAMPLER`)."""
    parent = None if traceparent is None else _W3C.extract({"traceparent": traceparent})
    # Spans take wall-clock start times; `started` is monotonic.
    start_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
    # An unsampled span ignores its attributes.
    return tracer.start_span(
        f"ws {name}", parent, SpanKind.SERVER, {**attributes, CODE: OK}, start_time=start_ns
    )


def end(span: Span, code: str, reply: str | bytes | memoryview) -> None:
    """End a request's span: how it ended (`set_code`) and the size of its reply."""
    if span.is_recording():
        if code != OK:
            set_code(span, code)
        span.set_attribute(REPLY_BYTES, reply_size(reply))
    span.end()


@contextmanager
def request_span(
    tracer: Tracer,
    name: str,
    started: float,
    traceparent: str | None,
    attributes: Mapping[str, AttributeValue],
) -> Iterator[Span]:
    """The span of `start`, current inside the block and ended with it.

    `lipsync.code` is OK unless `set_code` says otherwise; a block left by cancellation or by the
    client going away ends CANCELLED, one left by an exception (a bug) INTERNAL.
    """
    span = start(tracer, name, started, traceparent, attributes)
    try:
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            yield span
    except (asyncio.CancelledError, ConnectionClosed):
        set_code(span, CANCELLED)
        raise
    except Exception as error:
        span.record_exception(error)
        set_code(span, "INTERNAL")
        raise
    finally:
        span.end()


async def traced(
    tracer: Tracer,
    name: str,
    started: float,
    traceparent: str | None,
    attributes: Mapping[str, AttributeValue],
    reply: Awaitable[SizedReply],
) -> SizedReply:
    """Await `reply` (a coroutine not yet started) inside its request span, and record its size."""
    with request_span(tracer, name, started, traceparent, attributes) as span:
        result = await reply
        span.set_attribute(REPLY_BYTES, reply_size(result))
        return result
