"""The gRPC server span: opentelemetry-instrumentation-grpc's aio interceptor, with its response-streaming
path replaced.

The library keeps the server span current (a context token attached) across every `yield` of a
streaming handler. When a client cancels mid-stream, grpc abandons the handler's generator between two
messages and asyncio closes it later from another task, where the detach fails: "Failed to detach
context" is logged at ERROR for every cancelled stream, and the span ends only then
(open-telemetry/opentelemetry-python-contrib#2357; StreamInfer and Speak are such handlers). Here the
span is made current only while the handler runs up to its next message, and ended in `finally`. Unary
responses keep the library's path: there the context is attached and detached by the one task that
runs the call, even when it is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc._aio_server import (
    OpenTelemetryAioServerInterceptor,
    _OpenTelemetryAioServicerContext,
)
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

# The library's instrumentation scope, so that both paths report under one name.
SCOPE = "opentelemetry.instrumentation.grpc"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.11.0"

StreamBehavior = Callable[[Any, Any], AsyncGenerator[Any, None]]


def _rpc_attributes(method: str) -> dict[str, str | int]:
    """The attributes the library gives a server span: rpc.system, rpc.service, rpc.method, status."""
    attributes: dict[str, str | int] = {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
    }
    service, _, name = method.lstrip("/").partition("/")
    if name:
        attributes.update({"rpc.service": service, "rpc.method": name})
    return attributes


class ServerInterceptor(OpenTelemetryAioServerInterceptor):
    """A SERVER span per call (continuing a `traceparent` sent as metadata) for calls `filter_` keeps."""

    def __init__(
        self, provider: trace.TracerProvider, filter_: Callable[[grpc.HandlerCallDetails], bool]
    ) -> None:
        # The library's classes carry no annotations.
        super().__init__(  # type: ignore[no-untyped-call]
            provider.get_tracer(SCOPE, schema_url=SCHEMA_URL), filter_=filter_
        )

    def _intercept_aio_server_stream(
        self, behavior: StreamBehavior, handler_call_details: grpc.HandlerCallDetails
    ) -> StreamBehavior:
        tracer: Tracer = self._tracer
        method = handler_call_details.method or ""

        async def intercept(request_or_iterator: Any, context: Any) -> AsyncGenerator[Any, None]:
            metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
            span = tracer.start_span(
                method, context=extract(metadata), kind=SpanKind.SERVER, attributes=_rpc_attributes(method)
            )
            # Records the status of abort() and set_code() on the span, as on the unary path.
            wrapped = _OpenTelemetryAioServicerContext(context, span)  # type: ignore[no-untyped-call]
            responses = behavior(request_or_iterator, wrapped)
            try:
                while True:
                    with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                        try:
                            response = await anext(responses)
                        except StopAsyncIteration:
                            return
                    yield response
            except (asyncio.CancelledError, GeneratorExit):
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.CANCELLED.value[0])
                raise
            except grpc.aio.AbortError:
                raise  # the servicer context wrapper has recorded the status
            except Exception as error:
                span.record_exception(error)
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.UNKNOWN.value[0])
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                raise
            finally:
                await responses.aclose()
                span.end()

        return intercept
