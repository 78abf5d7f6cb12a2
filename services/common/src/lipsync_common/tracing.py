"""Tracing set up from the standard `OTEL_*` variables only, by the same rules in every service
(docs/observability.md, "Configuration").

Tracing is on only when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT`). The specification would fall back to `http://localhost:4317`; the
services do not, so that a deployment without a collector creates no exporter, starts no export thread
and spends nothing on spans. `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn tracing off
even with an endpoint. Export is OTLP/gRPC, the only protocol accepted.

A missing or slow collector never slows a request: finished spans go into the bounded queue of a
`BatchSpanProcessor` (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by default; spans beyond it are dropped) and are
exported from its own thread, each export giving up after `OTEL_EXPORTER_OTLP_TIMEOUT` seconds (2 s
when unset, instead of the SDK's 10 s, which also bounds the final flush at shutdown).

What differs between the services stays with them: the default service name, and how the problems
found here join the rest of that service's settings problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_EXPORT_TIMEOUT_S = 2.0
NO_ENDPOINT = "no OTEL_EXPORTER_OTLP_ENDPOINT"


@dataclass(frozen=True)
class TracingConfig:
    """What the `OTEL_*` variables ask of tracing. `endpoint` None: tracing is off, for `off_reason`.

    `problems` describes every unusable variable; a config with problems has tracing off, and its
    service refuses to start, reporting them with its other settings problems.
    """

    endpoint: str | None = None
    timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S
    off_reason: str = NO_ENDPOINT
    problems: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """One line for the startup log."""
        return f"OTLP/gRPC to {self.endpoint}" if self.endpoint else f"off ({self.off_reason})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TracingConfig:
        """Decide from the `OTEL_*` variables whether and where to export; every problem at once."""
        problems: list[str] = []
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

        if problems:
            return cls(off_reason="unusable OTEL_* variables", problems=tuple(problems))
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(off_reason="OTEL_SDK_DISABLED=true")
        if "otlp" not in exporters:
            return cls(off_reason="OTEL_TRACES_EXPORTER=none")
        if endpoint is None:
            return cls()
        return cls(endpoint[1], timeout_s)


def _first_set(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` with a non-blank value, and that value."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def tracer_provider(config: TracingConfig, default_service_name: str) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC as `config` says, or None when tracing is off.

    The service name comes from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`, and is
    `default_service_name` when neither names it; the SDK itself reads the sampler
    (`OTEL_TRACES_SAMPLER`), the batching (`OTEL_BSP_*`), headers, compression and TLS from the process
    environment.
    """
    if config.endpoint is None:
        return None
    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: str(named or default_service_name)}))
    exporter = OTLPSpanExporter(endpoint=config.endpoint, timeout=config.timeout_s)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
