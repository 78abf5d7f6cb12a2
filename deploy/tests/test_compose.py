"""The compose stack and its CI override, as compose itself resolves them (`compose config`), read in
a way that holds for both docker-compose 1.29's and docker compose v2's output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "compose" / "compose.yaml"
CI_OVERRIDE = REPO / "deploy" / "compose" / "compose.ci.yaml"
LONG_RUNNING = ("lipsync-server", "proxy", "nginx", "jaeger")
ONE_SHOT = ("cert-init", "model-init")

Config = dict[str, Any]


def resolve(compose: list[str], *files: Path, env: dict[str, str] | None = None) -> Config:
    """`compose config` of these files, parsed; LIPSYNC_MODELS_DIR unset unless `env` sets it."""
    environ = {k: v for k, v in os.environ.items() if k != "LIPSYNC_MODELS_DIR"} | (env or {})
    command = [*compose, *(arg for path in files for arg in ("-f", str(path))), "config"]
    result = subprocess.run(command, capture_output=True, text=True, env=environ, cwd=REPO)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def stack(compose: list[str]) -> Config:
    return resolve(compose, STACK)["services"]  # type: ignore[no-any-return]


def volume(entry: str | dict[str, Any]) -> tuple[str, str, bool]:
    """(source, target, read-only) of a short (v1) or long (v2) volume entry."""
    if isinstance(entry, dict):
        return str(entry.get("source", "")), entry["target"], bool(entry.get("read_only", False))
    source, target, *mode = entry.split(":")
    return source, target, mode == ["ro"]


def published(entry: str | dict[str, Any]) -> tuple[str, str]:
    """(host address, container port) of a short (v1) or long (v2) port entry."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "0.0.0.0")), str(entry["target"])
    parts = entry.split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else "0.0.0.0"), parts[-1]


def test_the_stack_and_its_ci_override_pass_compose_config(compose: list[str]) -> None:
    for files in ((STACK,), (STACK, CI_OVERRIDE)):
        command = [*compose, *(arg for path in files for arg in ("-f", str(path))), "config", "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr


def test_the_stack_has_the_services_of_the_design(stack: Config) -> None:
    assert set(stack) == {*LONG_RUNNING, *ONE_SHOT}


def test_every_long_running_service_has_a_healthcheck_a_memory_limit_and_restarts(stack: Config) -> None:
    for name in LONG_RUNNING:
        service = stack[name]
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service.get("mem_limit"), name
        assert service["restart"] == "unless-stopped", name


def test_one_shot_services_do_not_restart_and_have_a_memory_limit(stack: Config) -> None:
    for name in ONE_SHOT:
        assert stack[name].get("restart", "no") == "no", name
        assert stack[name].get("mem_limit"), name


def test_every_service_runs_read_only_without_capabilities_or_new_privileges(stack: Config) -> None:
    for name, service in stack.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_services_start_only_once_what_they_need_is_ready(stack: Config) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in stack[name]["depends_on"].items()}

    assert conditions("lipsync-server") == {"model-init": "service_completed_successfully"}
    assert conditions("proxy") == {"lipsync-server": "service_healthy"}
    assert conditions("nginx") == {
        "cert-init": "service_completed_successfully",
        "proxy": "service_healthy",
        "lipsync-server": "service_healthy",
    }


def test_the_certificate_is_made_once_into_a_volume_that_nginx_mounts_read_only(stack: Config) -> None:
    assert stack["cert-init"]["entrypoint"] == ["make-cert"]
    assert [volume(v) for v in stack["cert-init"]["volumes"]] == [("tls", "/etc/nginx/tls", False)]
    assert [volume(v) for v in stack["nginx"]["volumes"]] == [("tls", "/etc/nginx/tls", True)]


def test_the_demo_avatar_is_prepared_unless_a_host_models_folder_is_given(compose: list[str]) -> None:
    def host_models_source(config: Config) -> str:
        mounts = [volume(v) for v in config["services"]["model-init"]["volumes"]]
        return next(source for source, target, _ in mounts if target == "/host-models")

    default = resolve(compose, STACK)
    assert host_models_source(default) == "no-host-models"
    assert "no-host-models" in default["volumes"]
    assert (
        host_models_source(resolve(compose, STACK, env={"LIPSYNC_MODELS_DIR": "/srv/models"}))
        == "/srv/models"
    )
    server_mounts = [volume(v) for v in default["services"]["lipsync-server"]["volumes"]]
    assert server_mounts == [("models", "/models", True)]
    assert default["services"]["lipsync-server"]["environment"]["LIPSYNC_MODELS_DIR"] == "/models"


def test_only_nginx_is_published_beyond_loopback(stack: Config) -> None:
    for name, service in stack.items():
        for entry in service.get("ports", []):
            address, port = published(entry)
            if name == "nginx":
                assert port in ("8443", "8080")
            else:
                assert address == "127.0.0.1", f"{name} publishes {port} on {address}"


def test_the_services_export_traces_to_jaeger_through_the_standard_variables(stack: Config) -> None:
    for name in ("lipsync-server", "proxy"):
        environment = stack[name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", name
        assert environment["OTEL_SERVICE_NAME"] in ("lipsync-server", "lipsync-proxy"), name


def test_the_services_trace_a_small_share_of_requests_and_follow_their_parent(stack: Config) -> None:
    for name in ("lipsync-server", "proxy"):
        environment = stack[name]["environment"]
        assert environment["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio", name
        assert 0.0 < float(environment["OTEL_TRACES_SAMPLER_ARG"]) <= 0.05, name


def test_the_ci_override_swaps_jaeger_for_the_otlp_sink_and_builds_on_the_host_network(
    compose: list[str],
) -> None:
    services = resolve(compose, STACK, CI_OVERRIDE)["services"]
    assert services["jaeger"]["image"].startswith("lipsync/otlp-sink:")
    assert services["jaeger"]["command"] == ["--otlp-port", "4317", "--http-port", "16686"]
    assert services["jaeger"]["build"]["dockerfile"] == "deploy/otlp-sink/Dockerfile"
    for name, service in services.items():
        assert service["build"]["network"] == "host", name


def test_the_server_scales_no_fixed_name_or_host_port_and_the_proxy_follows_its_name(stack: Config) -> None:
    server = stack["lipsync-server"]
    assert "container_name" not in server
    assert not server.get("ports")
    assert stack["proxy"]["environment"]["GRPC_ADDR"] == "dns:///lipsync-server:50051"


def test_jaeger_is_v2_with_the_charts_config_and_a_healthcheck_its_image_can_run(stack: Config) -> None:
    jaeger = stack["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")
    assert jaeger["command"] == ["--config", "/etc/jaeger/config.yaml"]
    source, target, read_only = volume(jaeger["volumes"][0])
    assert Path(source) == REPO / "deploy" / "helm" / "lipsync" / "files" / "jaeger.yaml"
    assert (target, read_only) == ("/etc/jaeger/config.yaml", True)
    # The image is Alpine plus the Jaeger binary: BusyBox wget, no curl or Python; healthcheckv2 on 13133.
    assert jaeger["healthcheck"]["test"] == ["CMD", "wget", "-q", "--spider", "http://127.0.0.1:13133/status"]
    assert "endpoint: 0.0.0.0:13133" in Path(source).read_text()
    assert {published(entry)[1] for entry in jaeger["ports"]} == {"16686", "4317", "4318"}
