"""Tracing set up from the standard `OTEL_*` variables only, by the same rules as the lipsync-server
(docs/observability.md, "Configuration").

Tracing is on only when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT`); without one there is no exporter, no export thread and no span.
`OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn it off even with an endpoint. Export is
OTLP/gRPC. Finished spans go into the bounded queue of a `BatchSpanProcessor` and are exported from its
own thread, each export giving up after `OTEL_EXPORTER_OTLP_TIMEOUT` seconds (2 s when unset, not the
SDK's 10 s): a missing or slow collector never slows a request.

Only two things differ from the server: an unusable variable is reported with the proxy's other
settings problems (see `lipsync_proxy.settings`), and the service is named lipsync-proxy by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_SERVICE_NAME = "lipsync-proxy"
DEFAULT_EXPORT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class TracingSettings:
    """What the `OTEL_*` variables ask of tracing. `endpoint` None: tracing is off, for `off_reason`."""

    endpoint: str | None = None
    timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S
    off_reason: str = "no OTEL_EXPORTER_OTLP_ENDPOINT"

    @property
    def summary(self) -> str:
        """One line for the startup log."""
        return f"OTLP/gRPC to {self.endpoint}" if self.endpoint else f"off ({self.off_reason})"


def _first_set(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` with a non-blank value, and that value."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def tracing_settings(environ: Mapping[str, str], problems: list[str]) -> TracingSettings:
    """Read the `OTEL_*` variables; append every unusable one to `problems`."""
    exporters = {part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    exporters.discard("")
    if unknown := sorted(exporters - {"otlp", "none"}):
        problems.append(f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} not supported (use otlp or none)")
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

    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSettings(off_reason="OTEL_SDK_DISABLED=true")
    if "otlp" not in exporters:
        return TracingSettings(off_reason="OTEL_TRACES_EXPORTER=none")
    if endpoint is None:
        return TracingSettings()
    return TracingSettings(endpoint[1], timeout_s)


def tracer_provider(settings: TracingSettings) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC as `settings` say, or None when tracing is off.

    The service name comes from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` (lipsync-proxy when
    neither names it); the SDK itself reads the sampler (`OTEL_TRACES_SAMPLER`), the batching
    (`OTEL_BSP_*`), headers, compression and TLS from the process environment.
    """
    if settings.endpoint is None:
        return None
    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: str(named or DEFAULT_SERVICE_NAME)}))
    exporter = OTLPSpanExporter(endpoint=settings.endpoint, timeout=settings.timeout_s)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
