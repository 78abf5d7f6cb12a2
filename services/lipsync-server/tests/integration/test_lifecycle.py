"""Health, reflection, metrics, models directories, admin loading, and shutdown of the real process."""

from __future__ import annotations

import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_process import SERVER_BIN, TIME_UNIT, ServerProcess, health_status

from lipsync_common.waiting import wait_until
from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> Path:
    """A models root with the demo package, a broken package and a stray file."""
    root = tmp_path_factory.mktemp("models")
    subprocess.run([str(SERVER_BIN), "make-demo", str(demo_cache)], check=True, capture_output=True)
    (demo,) = [p for p in demo_cache.iterdir() if (p / "manifest.json").is_file()]
    shutil.copytree(demo, root / "avatar")
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def models_server(models_dir: Path, demo_cache: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        ["--models-dir", str(models_dir), "--admin", "--grace-period", "1"], demo_cache
    ).start()
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()


def test_health_is_serving_overall_and_per_service(demo_server: ServerProcess) -> None:
    assert health_status(demo_server.address, "") == SERVING
    assert health_status(demo_server.address, "lipsync.v1.LipSync") == SERVING
    assert health_status(demo_server.address, "optimized_lipsyncsrv.OptimizedLipSyncService") == SERVING


def test_reflection_lists_every_service(demo_server: ServerProcess) -> None:
    with grpc.insecure_channel(demo_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5 * TIME_UNIT))
    names = {service.name for service in reply.list_services_response.service}
    assert {
        "lipsync.v1.LipSync",
        "optimized_lipsyncsrv.OptimizedLipSyncService",
        "grpc.health.v1.Health",
    } <= names


def test_metrics_count_requests_by_method_and_code(demo_server: ServerProcess) -> None:
    with grpc.insecure_channel(demo_server.address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        stub.Infer(pb.InferRequest(model_name="demo", frame_id=1))
        with pytest.raises(grpc.RpcError):
            stub.Infer(pb.InferRequest(model_name="demo", frame_id=-5))
    url = f"http://127.0.0.1:{demo_server.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5 * TIME_UNIT) as reply:
            return str(reply.read().decode())

    # The server counts a call once it has answered it: wait for the last one.
    failed = 'lipsync_server_requests_total{code="OUT_OF_RANGE",method="Infer"}'
    wait_until(lambda: failed in scrape(), 5 * TIME_UNIT, "the failed call counted")
    text = scrape()
    assert 'lipsync_server_requests_total{code="OK",method="Infer"}' in text
    assert 'lipsync_server_stage_duration_seconds_count{stage="encode"}' in text
    assert 'lipsync_server_models{state="ready"} 1.0' in text


def test_a_broken_package_is_refused_by_name_while_the_others_are_served(
    models_server: ServerProcess,
) -> None:
    with grpc.insecure_channel(models_server.address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
        assert models["demo"].state == pb.MODEL_STATE_READY
        assert models["broken"].state == pb.MODEL_STATE_FAILED
        assert "manifest.json" in models["broken"].error
        with pytest.raises(grpc.RpcError) as caught:
            stub.Infer(pb.InferRequest(model_name="broken", frame_id=0))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "manifest.json" in caught.value.details()


@pytest.mark.parametrize("path", ["/etc", "../avatar", "avatar/../..", "missing"])
def test_load_model_refuses_paths_outside_the_models_root(models_server: ServerProcess, path: str) -> None:
    with grpc.insecure_channel(models_server.address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.LoadModel(pb.LoadModelRequest(path=path), timeout=30 * TIME_UNIT)
    assert caught.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


def test_load_model_loads_a_package_under_a_new_name_and_unload_removes_it(
    models_server: ServerProcess,
) -> None:
    with grpc.insecure_channel(models_server.address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        loaded = stub.LoadModel(pb.LoadModelRequest(path="avatar", name="second"), timeout=60 * TIME_UNIT)
        assert loaded.model.name == "second"
        assert loaded.model.state == pb.MODEL_STATE_READY
        frame = stub.Infer(pb.InferRequest(model_name="second", frame_id=0), timeout=10 * TIME_UNIT)
        assert frame.image[:2] == b"\xff\xd8"
        assert stub.UnloadModel(pb.UnloadModelRequest(model_name="second")).unloaded
        with pytest.raises(grpc.RpcError) as caught:
            stub.Infer(pb.InferRequest(model_name="second", frame_id=0))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_sigterm_turns_health_not_serving_and_the_process_exits_0(demo_cache: Path) -> None:
    server = ServerProcess(["--grace-period", "1"], demo_cache).start()
    server.wait_serving()
    seen: list[int] = []

    def watch() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                for reply in stub.Watch(health_pb2.HealthCheckRequest(service="lipsync.v1.LipSync")):
                    seen.append(int(reply.status))
            except grpc.RpcError:
                pass  # the stream ends when the server stops

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = 50
    while not seen and deadline:
        watcher.join(0.1 * TIME_UNIT)
        deadline -= 1
    assert server.stop() == 0
    watcher.join(10 * TIME_UNIT)
    assert seen[0] == SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in seen


def test_a_port_in_use_is_one_clear_line_and_exit_2(demo_server: ServerProcess, demo_cache: Path) -> None:
    result = subprocess.run(
        [
            str(SERVER_BIN),
            "--host",
            "127.0.0.1",
            "--port",
            str(demo_server.port),
            "--cache-dir",
            str(demo_cache),
        ],
        capture_output=True,
        text=True,
        timeout=30 * TIME_UNIT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(demo_server.port) in lines[0]


def test_invalid_settings_are_all_reported_at_once() -> None:
    result = subprocess.run(
        [str(SERVER_BIN), "--jpeg-quality", "0", "--device", "tpu"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--jpeg-quality" in result.stderr
    assert "--device" in result.stderr
