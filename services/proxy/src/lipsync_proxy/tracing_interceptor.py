"""The gRPC client span: opentelemetry-instrumentation-grpc's aio client interceptors, with their
cancellation paths fixed.

The proxy's calls are unary (`Infer` and the lookups) and one bidirectional stream per v2 session
(`Speak`), so only those two interceptors are installed, and only while tracing is on: any interceptor
puts an extra task under every call.

* Unary: the library's interceptor waits for the call's status inside its own task. When the caller's
  task is cancelled (its WebSocket client went away, a v2 CANCEL), that wait is cancelled but neither
  the RPC nor the span is: the server goes on rendering a frame nobody reads, and the client span never
  ends, so the server span's parent is missing from the trace
  (open-telemetry/opentelemetry-python-contrib#3271). Here the RPC is cancelled and the span ends,
  its `rpc.grpc.status_code` CANCELLED.
* Streams: the library ends the span when the response iterator ends (the stream's end, its error, a
  cancelled read). A stream left between two reads ends its span only when the iterator is collected,
  reading as OK; here it reads CANCELLED.

A call gets a client span only inside a span of the proxy (a WebSocket request's or a session's): the
model refresh of the health monitor, outside any request, is not traced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc._aio_client import (
    StreamStreamAioClientInterceptor,
    UnaryUnaryAioClientInterceptor,
    _unary_done_callback,
)
from opentelemetry.instrumentation.grpc.version import __version__
from opentelemetry.trace import Span

# The library's instrumentation scope, as its own aio_client_interceptors() names it.
SCOPE = "opentelemetry.instrumentation.grpc"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.11.0"
_STATUS_CODE = "rpc.grpc.status_code"
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]


def in_a_span(call_details: grpc.aio.ClientCallDetails) -> bool:
    """Whether a call is made inside a span (it runs in the interceptor's task, which has a copy of the
    caller's context)."""
    return trace.get_current_span().get_span_context().is_valid


class UnaryUnaryInterceptor(UnaryUnaryAioClientInterceptor):
    """A CLIENT span per unary call made inside a span; a cancelled call is cancelled at the server."""

    async def _wrap_unary_response(self, continuation: Callable[[], Awaitable[Any]], span: Span) -> Any:
        call = None
        try:
            call = await continuation()
            code = await call.code()
            details = await call.details()
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()
            span.set_attribute(_STATUS_CODE, _CANCELLED)
            span.end()
            raise
        except Exception as error:
            self.add_error_details_to_span(span, error)  # type: ignore[no-untyped-call]
            span.end()
            raise
        # The call is over: its status and the end of the span go in now.
        _unary_done_callback(span, code, details, self._call_response_hook)(call)  # type: ignore[no-untyped-call]
        return call


class StreamStreamInterceptor(StreamStreamAioClientInterceptor):
    """A CLIENT span per bidirectional stream opened inside a span, from its start to its end."""

    async def _wrap_stream_response(self, span: Span, call: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for response in call:
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            span.set_attribute(_STATUS_CODE, _CANCELLED)
            raise
        except Exception as error:
            self.add_error_details_to_span(span, error)  # type: ignore[no-untyped-call]
            raise
        finally:
            span.end()


def client_interceptors(provider: trace.TracerProvider | None) -> list[grpc.aio.ClientInterceptor]:
    """The interceptors of the proxy's call channel: none when tracing is off."""
    if provider is None:
        return []
    tracer = provider.get_tracer(SCOPE, __version__, schema_url=SCHEMA_URL)
    # The library's classes carry no annotations.
    return [
        UnaryUnaryInterceptor(tracer, filter_=in_a_span),  # type: ignore[no-untyped-call]
        StreamStreamInterceptor(tracer, filter_=in_a_span),  # type: ignore[no-untyped-call]
    ]
