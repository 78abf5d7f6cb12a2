"""Tracing: the OpenTelemetry SDK set up from the standard `OTEL_*` variables only, the gRPC server span,
and the stage spans of every rendered frame.

Tracing is on only when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT`). The specification would fall back to `http://localhost:4317`; this
server does not, so that a deployment without a collector creates no exporter, starts no export thread
and spends nothing on spans. `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn tracing off
even with an endpoint. Export is OTLP/gRPC, the only protocol accepted.

A missing or slow collector never slows a request: finished spans go into the bounded queue of a
`BatchSpanProcessor` (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by default; spans beyond it are dropped) and are
exported from its own thread, each export giving up after `OTEL_EXPORTER_OTLP_TIMEOUT` seconds (2 s
when unset, instead of the SDK's 10 s, which also bounds the final flush at shutdown).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from lipsync_server.settings import SettingsError
from lipsync_server.tracing_interceptor import ServerInterceptor

DEFAULT_SERVICE_NAME = "lipsync-server"
DEFAULT_EXPORT_TIMEOUT_S = 2.0
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


@dataclass(frozen=True)
class TracingConfig:
    """What the `OTEL_*` variables ask of tracing. `endpoint` None: tracing off, for `reason`."""

    endpoint: str | None
    timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S
    reason: str = ""

    @property
    def summary(self) -> str:
        """One line for the startup log."""
        return f"OTLP/gRPC to {self.endpoint}" if self.endpoint else f"off ({self.reason})"


def _first_set(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` with a non-blank value, and that value."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def tracing_config(environ: Mapping[str, str]) -> TracingConfig:
    """Decide from the `OTEL_*` variables whether and where to export; every problem at once."""
    problems: list[str] = []
    exporters = {part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    exporters.discard("")
    if exporters - {"otlp", "none"}:
        listed = ", ".join(sorted(exporters - {"otlp", "none"}))
        problems.append(f"OTEL_TRACES_EXPORTER: {listed} not supported (use otlp or none)")
    protocol = _first_set(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol is not None and protocol[1] != "grpc":
        problems.append(f"{protocol[0]}={protocol[1]!r} not supported (only grpc)")
    endpoint = _first_set(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is not None:
        url = urlsplit(endpoint[1])
        if url.scheme not in ("http", "https") or not url.hostname:
            problems.append(f"{endpoint[0]}={endpoint[1]!r} must be an http:// or https:// URL")
    timeout_s = DEFAULT_EXPORT_TIMEOUT_S
    timeout = _first_set(environ, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    if timeout is not None:
        # Seconds, as the Python SDK reads these variables (the specification says milliseconds).
        try:
            timeout_s = float(timeout[1])
        except ValueError:
            timeout_s = 0.0
        if not timeout_s > 0:
            problems.append(f"{timeout[0]}={timeout[1]!r} must be a positive number of seconds")
    if problems:
        raise SettingsError("; ".join(problems))

    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingConfig(None, reason="OTEL_SDK_DISABLED=true")
    if "otlp" not in exporters:
        return TracingConfig(None, reason="OTEL_TRACES_EXPORTER=none")
    if endpoint is None:
        return TracingConfig(None, reason="no OTEL_EXPORTER_OTLP_ENDPOINT")
    return TracingConfig(endpoint[1], timeout_s)


def _resource() -> Resource:
    """The process's resource from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, named
    lipsync-server when neither names the service."""
    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    return Resource.create({SERVICE_NAME: str(named or DEFAULT_SERVICE_NAME)})


def tracer_provider(config: TracingConfig) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC as `config` says, or None when tracing is off.

    The sampler (`OTEL_TRACES_SAMPLER`), the batching (`OTEL_BSP_*`), headers, compression and TLS are
    read by the SDK itself from the process environment.
    """
    if config.endpoint is None:
        return None
    provider = TracerProvider(resource=_resource())
    exporter = OTLPSpanExporter(endpoint=config.endpoint, timeout=config.timeout_s)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


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
