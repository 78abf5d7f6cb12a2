"""Which `OTEL_*` variables turn tracing on, what they may not say, and the provider they build."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from lipsync_common.tracing import DEFAULT_EXPORT_TIMEOUT_S, TracingConfig, tracer_provider

ENDPOINT = "http://collector:4317"

UNUSABLE = {
    "OTEL_TRACES_EXPORTER": "zipkin",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
}


# --- which OTEL_* variables turn tracing on -------------------------------------------------------------


def test_without_an_endpoint_tracing_is_off_though_otlp_is_the_default_exporter() -> None:
    for environ in ({}, {"OTEL_TRACES_EXPORTER": "otlp"}):
        config = TracingConfig.from_environ(environ)
        assert (config.endpoint, config.problems) == (None, ())
        assert config.summary == "off (no OTEL_EXPORTER_OTLP_ENDPOINT)"


def test_an_endpoint_turns_tracing_on_with_a_short_export_timeout() -> None:
    config = TracingConfig.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT})
    assert config == TracingConfig(ENDPOINT, DEFAULT_EXPORT_TIMEOUT_S)
    assert DEFAULT_EXPORT_TIMEOUT_S == 2.0
    assert config.summary == f"OTLP/gRPC to {ENDPOINT}"


def test_the_traces_endpoint_and_timeout_beat_the_general_ones() -> None:
    config = TracingConfig.from_environ(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "7",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5",
        }
    )
    assert (config.endpoint, config.timeout_s) == ("https://traces:4317", 0.5)


@pytest.mark.parametrize(
    ("variable", "value"), [("OTEL_TRACES_EXPORTER", "none"), ("OTEL_SDK_DISABLED", "TRUE")]
)
def test_tracing_can_be_switched_off_with_an_endpoint_set(variable: str, value: str) -> None:
    config = TracingConfig.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, variable: value})
    assert (config.endpoint, config.problems) == (None, ())
    assert variable in config.off_reason
    assert variable in config.summary


def test_grpc_is_the_accepted_protocol() -> None:
    config = TracingConfig.from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert (config.endpoint, config.problems) == (ENDPOINT, ())


# --- what the variables may not say ---------------------------------------------------------------------


def test_every_unusable_variable_is_listed_at_once() -> None:
    problems = TracingConfig.from_environ(UNUSABLE).problems
    assert len(problems) == 4
    for expected, problem in zip(
        ("zipkin", "http/protobuf", "'collector:4317'", "'soon'"), problems, strict=True
    ):
        assert expected in problem


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_an_export_timeout_must_be_a_positive_number_of_seconds(timeout: str) -> None:
    config = TracingConfig.from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": timeout}
    )
    assert config.problems == (
        f"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT={timeout!r} must be a positive number of seconds",
    )


def test_a_config_with_problems_exports_nothing_even_with_a_usable_endpoint() -> None:
    config = TracingConfig.from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"}
    )
    assert config.problems
    assert config.endpoint is None
    assert tracer_provider(config, "lipsync-test") is None


# --- the provider ---------------------------------------------------------------------------------------


def test_no_provider_when_tracing_is_off() -> None:
    assert tracer_provider(TracingConfig(), "lipsync-test") is None


def test_the_service_gets_its_default_name_unless_the_environment_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    names = []
    # Each step adds to the environment: OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES.
    for environ in (
        {},
        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"},
        {"OTEL_SERVICE_NAME": "edge-1"},
    ):
        for variable, value in environ.items():
            monkeypatch.setenv(variable, value)
        provider = tracer_provider(TracingConfig("http://127.0.0.1:9", 0.1), "lipsync-test")
        assert isinstance(provider, TracerProvider)
        names.append(provider.resource.attributes[SERVICE_NAME])
        provider.shutdown()
    assert names == ["lipsync-test", "from-attributes", "edge-1"]
