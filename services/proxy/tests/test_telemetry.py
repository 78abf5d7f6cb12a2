"""The proxy's share of tracing: the `OTEL_*` variables' problems among its settings problems, and its
default service name (the rules themselves: lipsync_common.tracing)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from lipsync_common.tracing import TracingConfig
from lipsync_proxy.cli import tracer_provider
from lipsync_proxy.settings import SettingsError, settings_from_args

ENDPOINT = "http://collector:4317"


def test_unusable_variables_are_reported_with_the_flags_problems_in_one_message() -> None:
    environ = {
        "OTEL_TRACES_EXPORTER": "zipkin",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
    }
    with pytest.raises(SettingsError) as error:
        settings_from_args(["--max-inflight", "0"], environ=environ)
    message = str(error.value)
    for expected in ("--max-inflight 0", "zipkin", "http/protobuf", "'collector:4317'", "'soon'"):
        assert expected in message


def test_the_settings_carry_what_the_environment_asks_of_tracing() -> None:
    settings = settings_from_args([], environ={"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT})
    assert settings.tracing == TracingConfig(ENDPOINT)
    assert settings_from_args([], environ={}).tracing.endpoint is None


def test_the_service_is_named_lipsync_proxy_unless_otel_service_name_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    names = []
    for service_name in (None, "edge-proxy"):
        if service_name is not None:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service_name)
        provider = tracer_provider(TracingConfig(ENDPOINT))
        assert isinstance(provider, TracerProvider)
        names.append(provider.resource.attributes[SERVICE_NAME])
        provider.shutdown()
    assert names == ["lipsync-proxy", "edge-proxy"]
