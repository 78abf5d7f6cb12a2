"""Which `OTEL_*` variables turn the proxy's tracing on, and the provider they build."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from lipsync_proxy.settings import SettingsError, settings_from_args
from lipsync_proxy.telemetry import (
    DEFAULT_EXPORT_TIMEOUT_S,
    TracingSettings,
    tracer_provider,
    tracing_settings,
)

ENDPOINT = "http://collector:4317"


def read(environ: dict[str, str]) -> tuple[TracingSettings, list[str]]:
    problems: list[str] = []
    return tracing_settings(environ, problems), problems


def test_without_an_endpoint_tracing_is_off_though_otlp_is_the_default_exporter() -> None:
    for environ in ({}, {"OTEL_TRACES_EXPORTER": "otlp"}):
        settings, problems = read(environ)
        assert (settings.endpoint, problems) == (None, [])
        assert settings.summary == "off (no OTEL_EXPORTER_OTLP_ENDPOINT)"


def test_an_endpoint_turns_tracing_on_with_a_short_export_timeout() -> None:
    settings, problems = read({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT})
    assert (settings.endpoint, settings.timeout_s, problems) == (ENDPOINT, DEFAULT_EXPORT_TIMEOUT_S, [])
    assert settings.summary == f"OTLP/gRPC to {ENDPOINT}"


def test_the_traces_endpoint_and_timeout_beat_the_general_ones() -> None:
    settings, _ = read(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "7",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5",
        }
    )
    assert (settings.endpoint, settings.timeout_s) == ("https://traces:4317", 0.5)


@pytest.mark.parametrize(
    ("variable", "value"), [("OTEL_TRACES_EXPORTER", "none"), ("OTEL_SDK_DISABLED", "TRUE")]
)
def test_tracing_can_be_switched_off_with_an_endpoint_set(variable: str, value: str) -> None:
    settings, problems = read({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, variable: value})
    assert (settings.endpoint, problems) == (None, [])
    assert variable in settings.summary


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
    assert settings.tracing == TracingSettings(ENDPOINT)
    assert settings_from_args([], environ={}).tracing.endpoint is None


def test_no_provider_when_tracing_is_off() -> None:
    assert tracer_provider(TracingSettings()) is None


def test_the_service_is_named_lipsync_proxy_unless_otel_service_name_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    names = []
    for service_name in (None, "edge-proxy"):
        if service_name is not None:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service_name)
        provider = tracer_provider(TracingSettings(ENDPOINT))
        assert isinstance(provider, TracerProvider)
        names.append(provider.resource.attributes[SERVICE_NAME])
        provider.shutdown()
    assert names == ["lipsync-proxy", "edge-proxy"]
