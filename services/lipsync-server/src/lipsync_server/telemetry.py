"""Tracing: the OpenTelemetry SDK set up from the standard `OTEL_*` variables only, by the rules both
services share (`lipsync_common.tracing`), the gRPC server span, and the stage spans of every rendered
frame.

What is the server's own: the service is named lipsync-server by default, unusable `OTEL_*` variables
are a `SettingsError` (reported with the flags' problems), and health checks and reflection get no span.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from lipsync_common import tracing
from lipsync_common.tracing import TracingConfig
from lipsync_server.settings import SettingsError
from lipsync_server.tracing_interceptor import ServerInterceptor

DEFAULT_SERVICE_NAME = "lipsync-server"
INSTRUMENTATION_NAME = "lipsync_server"

# The span attributes this server sets; docs/observability.md lists them.
MODEL = "lipsync.model"
OUTPUT_MODE = "lipsync.output_mode"
FRAME_ID = "lipsync.frame_id"
BATCH_SIZE = "lipsync.batch_size"
JPEG_QUALITY = "lipsync.jpeg_quality"
IMAGE_BYTES = "lipsync.image_bytes"

# Calls that get no span, by the start of their full method name: probes and tooling would drown the
# traces people look for. The seed service's own HealthCheck is a probe too.
_UNTRACED_METHOD_PREFIXES = (
    "grpc.health.v1.",
    "grpc.reflection.",
    "optimized_lipsyncsrv.OptimizedLipSyncService/HealthCheck",
)


def tracing_config(environ: Mapping[str, str]) -> TracingConfig:
    """Decide from the `OTEL_*` variables whether and where to export; every problem at once, as one
    `SettingsError`."""
    config = TracingConfig.from_environ(environ)
    if config.problems:
        raise SettingsError("; ".join(config.problems))
    return config


def tracer_provider(config: TracingConfig) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC as `config` says, or None when tracing is off; the
    service is lipsync-server unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names it."""
    return tracing.tracer_provider(config, DEFAULT_SERVICE_NAME)


def is_traced(call_details: grpc.HandlerCallDetails) -> bool:
    """Whether a call gets a server span: every call but health checks (also the seed service's own
    HealthCheck) and reflection."""
    method = call_details.method or ""
    return not method.lstrip("/").startswith(_UNTRACED_METHOD_PREFIXES)


def server_interceptors(provider: trace.TracerProvider | None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor that gives every call a server span (continuing a `traceparent` sent as
    metadata), except health checks and reflection; none when tracing is off."""
    if provider is None:
        return []
    return [ServerInterceptor(provider, is_traced)]


def stage_tracer(provider: trace.TracerProvider | None) -> Tracer | None:
    """The tracer of the stage spans; None when tracing is off."""
    return None if provider is None else provider.get_tracer(INSTRUMENTATION_NAME)


@dataclass(frozen=True)
class SpanParent:
    """Where a frame's stage spans go: the tracer and the context of the call that asked for the frame.

    Captured on the event loop and handed to the worker thread with the frame, because
    `run_in_executor` does not carry context variables into the thread (and a batch may hold frames
    of several calls, each with its own trace).
    """

    tracer: Tracer
    context: otel_context.Context


def current_parent(tracer: Tracer | None, attributes: Mapping[str, AttributeValue]) -> SpanParent | None:
    """The current span as the parent of stage spans, after setting `attributes` on it.

    None when tracing is off or the current span is not recording (no span, or not sampled): then
    nothing at all is spent on the frame's stages.
    """
    if tracer is None:
        return None
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    span.set_attributes(attributes)
    return SpanParent(tracer, otel_context.get_current())


class TracedFrame(Protocol):
    """A frame whose stages may be traced (render.RenderRequest)."""

    @property
    def frame_id(self) -> int: ...

    @property
    def trace(self) -> SpanParent | None: ...


class StageSpans:
    """The spans of one stage, one per traced frame; empty when no frame is traced."""

    def __init__(self, spans: list[Span]) -> None:
        self._spans = spans

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        for span in self._spans:
            span.set_attribute(key, value)

    def fail(self, error: BaseException) -> None:
        for span in self._spans:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))

    def end(self) -> None:
        for span in self._spans:
            span.end()


@contextmanager
def stage_span(
    name: str, frames: Sequence[TracedFrame], attributes: Mapping[str, AttributeValue] | None = None
) -> Iterator[StageSpans]:
    """Time one stage as a span `name` under each traced frame's call span, with the frame's id.

    A stage done once for a batch (features, inference) gives every frame of the batch its own span
    over the same interval, so each call's trace shows where its time went. The spans are never made
    current: no context is attached in the worker thread.
    """
    spans = [
        frame.trace.tracer.start_span(
            name, context=frame.trace.context, attributes={FRAME_ID: frame.frame_id, **(attributes or {})}
        )
        for frame in frames
        if frame.trace is not None
    ]
    stage = StageSpans(spans)
    try:
        yield stage
    except BaseException as error:
        stage.fail(error)
        raise
    finally:
        stage.end()
