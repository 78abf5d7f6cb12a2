from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtests import served_streams
from loadtests.served_streams import ServedSetup, streams_summary, unet_package
from loadtests.viewers import Ramp, StepResult


def step(viewers: int, p99_ms: float, cores: float | None) -> StepResult:
    return StepResult(viewers, 100, 0, 0, p99_ms / 2, p99_ms, p99_ms, viewers * 25.0, 1, cores)


def test_streams_are_counted_per_gpu_and_per_busy_core_at_the_last_step_that_held() -> None:
    steps = [step(20, 30, 4.0), step(40, 60, 6.4), step(60, 140, 7.0)]
    result = streams_summary(steps, Ramp(), gpus=2, machine_cores=16)
    assert result["capacity_streams"] == 40
    assert result["frames_per_s"] == 1000.0
    assert result["streams_per_gpu"] == 20.0
    assert result["server_cores_busy"] == 6.4
    assert result["streams_per_core"] == 40 / 6.4
    assert result["streams_per_machine_core"] == 40 / 16
    assert [s["holds"] for s in result["steps"]] == [True, True, False]


def test_without_a_gpu_or_a_step_that_held_there_is_no_per_gpu_figure() -> None:
    result = streams_summary([step(2, 150, 1.0)], Ramp(), gpus=0, machine_cores=2)
    assert result["capacity_streams"] == 0
    assert result["streams_per_gpu"] is None
    assert result["streams_per_core"] is None


def test_the_setup_becomes_the_servers_flags() -> None:
    args = ServedSetup("unet328", "cuda", "fp16", 16, 1.0, workers=12).server_args()
    assert " ".join(args) == "--device cuda --precision fp16 --max-batch 16 --batch-wait-ms 1.0 --workers 12"
    assert "--workers" not in ServedSetup().server_args()


def test_a_unet328_package_is_the_demo_avatar_with_the_models_beside_it(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    manifest = {"name": "demo", "engine": "sprite", "sprite": {"mouth": 1}, "frames": "frames"}
    (demo / "manifest.json").write_text(json.dumps(manifest))
    for name in ("unet.onnx", "encoder.onnx"):
        (tmp_path / name).write_bytes(b"model")
    models = unet_package(demo, tmp_path / "models", tmp_path / "unet.onnx", tmp_path / "encoder.onnx", False)
    package = models / served_streams.UNET_MODEL
    written = json.loads((package / "manifest.json").read_text())
    assert written == {
        "name": served_streams.UNET_MODEL,
        "engine": "unet328",
        "frames": "frames",
        "models": {"unet": "unet.onnx", "audio_encoder": "audio_encoder.onnx"},
    }
    assert (package / "audio_encoder.onnx").read_bytes() == b"model"


@pytest.mark.timeout(300)
def test_a_real_server_holds_demo_streams_and_reports_its_busy_cores(tmp_path: Path) -> None:
    ramp = Ramp(start=1, step=1, step_s=0.5, settle_s=0.2, max_viewers=2)
    result = served_streams.served_streams(ServedSetup(workers=2), ramp, tmp_path, models_dir=None)
    assert result["benchmark"] == "served_streams"
    assert [s["viewers"] for s in result["steps"]] == [1, 2][: len(result["steps"])]
    first = result["steps"][0]
    assert first["frames"] > 0
    assert first["cores_busy"] > 0, "the server's CPU is read from /proc"
    assert result["machine_cores"] >= 1


def test_the_stand_in_models_answer_like_unet328_and_the_encoder_at_no_cost(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="needs onnx: make venv installs it")
    from lipsync_server.ave import AudioEncoder
    from lipsync_server.engines.unet328 import UnetModel, open_session

    unet_path, encoder_path = served_streams.stand_in_models(tmp_path)
    cpu = ["CPUExecutionProvider"]
    unet = UnetModel.of(open_session(unet_path, cpu), unet_path)
    images = np.random.default_rng(0).uniform(0, 1, (2, 6, 320, 320)).astype(np.float32)
    np.testing.assert_array_equal(unet.run(images, np.zeros((2, 32, 16, 16), np.float32)), images[:, :3])
    encoder = AudioEncoder(open_session(encoder_path, cpu), encoder_path)
    windows = np.arange(3 * 80 * 16, dtype=np.float32).reshape(3, 80, 16)
    np.testing.assert_array_equal(encoder(windows), windows.reshape(3, -1)[:, :512])
