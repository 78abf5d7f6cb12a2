"""Tracing set up from the standard `OTEL_*` variables only, by the rules both services share
(`lipsync_common.tracing`; docs/observability.md, "Configuration").

Only two things are the proxy's own: an unusable variable is reported with the proxy's other settings
problems (see `lipsync_proxy.settings`), and the service is named lipsync-proxy by default.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.trace import TracerProvider

from lipsync_common import tracing
from lipsync_common.tracing import TracingConfig

DEFAULT_SERVICE_NAME = "lipsync-proxy"


def tracing_settings(environ: Mapping[str, str], problems: list[str]) -> TracingConfig:
    """Read the `OTEL_*` variables; append every unusable one to `problems`."""
    config = TracingConfig.from_environ(environ)
    problems.extend(config.problems)
    return config


def tracer_provider(settings: TracingConfig) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC as `settings` say, or None when tracing is off; the
    service is lipsync-proxy unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names it."""
    return tracing.tracer_provider(settings, DEFAULT_SERVICE_NAME)
