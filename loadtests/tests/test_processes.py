from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtests.direct import direct_load
from loadtests.driver import Plan, Watched
from loadtests.idle import idle_connections
from loadtests.processes import BackendProcess, NginxProcess, ProxyProcess, deployed_otel
from loadtests.wsload import ws_load

from .conftest import tool


async def test_the_cpu_per_frame_of_the_real_proxy_and_backend_is_measured(
    stack: tuple[BackendProcess, ProxyProcess],
) -> None:
    backend, proxy = stack
    watch = [Watched(proxy.pid, "proxy"), Watched(backend.pid, "backend")]
    result = await ws_load(proxy.ws_url, "v1", Plan(connections=4, warmup_s=0.1, count=300), watch=watch)
    assert result.errors == {}
    assert result.frames >= 300
    assert result.cpu_us_per_frame("proxy") > 0
    assert result.cpu_us_per_frame("backend") > 0
    direct = await direct_load(backend.address, "unary", Plan(warmup_s=0.1, count=50), watch=watch)
    assert direct.errors == {}


async def test_idle_connections_are_held_open_while_the_proxys_memory_is_read(
    stack: tuple[BackendProcess, ProxyProcess],
) -> None:
    _, proxy = stack
    result = await idle_connections(proxy.ws_url, proxy.pid, count=20, frames_each=1, settle_s=0.2)
    assert result.connections == 20
    assert result.rss_before_kib > 0
    assert math.isfinite(result.kib_per_connection)


async def test_frames_go_through_nginx_over_tls(
    stack: tuple[BackendProcess, ProxyProcess], tmp_path: Path
) -> None:
    _, proxy = stack
    nginx = tool("nginx", "apt-get install nginx")
    openssl = tool("openssl", "apt-get install openssl")
    with NginxProcess(tmp_path, proxy_port=proxy.port, nginx=nginx, openssl=openssl) as edge:
        plan = Plan(warmup_s=0.1, count=30)
        result = await ws_load(edge.wss_url, "v2", plan, tls=edge.client_tls())
    assert result.errors == {}
    assert result.frames >= 30


def test_the_deployed_tracing_is_composes_with_the_endpoint_replaced() -> None:
    otel = deployed_otel("http://127.0.0.1:4317")
    assert otel["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
    assert otel["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert 0.0 < float(otel["OTEL_TRACES_SAMPLER_ARG"]) < 1.0


def test_a_proxy_gets_only_the_otel_variables_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4317")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert not [name for name in ProxyProcess(tmp_path).environment() if name.startswith("OTEL_")]
    traced = ProxyProcess(tmp_path, otel={"OTEL_TRACES_SAMPLER": "always_off"}).environment()
    assert {k: v for k, v in traced.items() if k.startswith("OTEL_")} == {"OTEL_TRACES_SAMPLER": "always_off"}


def test_the_benchmarked_proxy_logs_no_line_per_frame_as_the_deployments_ship_it(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    env_file = (repo / "deploy/compose/.env").read_text()
    assert "\nPROXY_QUIET_FRAMES=true\n" in env_file
    compose = (repo / "deploy/compose/compose.yaml").read_text()
    assert "PROXY_QUIET_FRAMES: ${PROXY_QUIET_FRAMES:-true}" in compose
    k8s = (repo / "deploy/k8s/proxy-deployment.yaml").read_text()
    assert '- name: PROXY_QUIET_FRAMES\n              value: "true"' in k8s
    assert "--quiet-frames" in ProxyProcess(tmp_path).command()
