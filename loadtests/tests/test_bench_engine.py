"""The unet328 engine benchmark's model timing: warm-up per batch size and the resident (I/O-bound) call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lipsync_server.engines.unet328 import UnetModel, open_session
from loadtests import bench_engine


class CountingSession:
    """An ONNX Runtime session double that records the batch size of every call."""

    def __init__(self, provider: str = "CPUExecutionProvider") -> None:
        self.batches: list[int] = []
        self._provider = provider

    def get_providers(self) -> list[str]:
        return [self._provider]

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = feeds["input"].shape[0]
        assert feeds["audio"].shape == (batch, 32, 16, 16)
        self.batches.append(batch)
        return [np.zeros((batch, 3, 320, 320), np.float32)]


def counting_model(session: CountingSession) -> UnetModel:
    return UnetModel(session, "input", "audio", "output", None)


def test_every_batch_size_is_warmed_up_before_its_timed_calls() -> None:
    # cuDNN searches convolution algorithms per input shape, so each batch size needs its own warm-up.
    session = CountingSession()
    images = np.zeros((1, 6, 320, 320), np.float32)
    for batch in (1, 4):
        figures = bench_engine.time_inference(counting_model(session), images, batch, repeats=5, warmup=3)
        assert figures["ms_per_frame"] == pytest.approx(figures["ms_per_batch"] / batch)
        assert figures["first_call_ms"] > 0
        assert "ms_per_batch_resident" not in figures, "the resident call is timed on CUDA only"
    # First call + 3 warm-ups + 5 timed, at each size.
    assert session.batches == [1] * 9 + [4] * 9


def test_cuda_is_read_from_the_sessions_providers() -> None:
    cpu, cuda = CountingSession(), CountingSession("CUDAExecutionProvider")
    assert not bench_engine.on_cuda(counting_model(cpu))
    assert bench_engine.on_cuda(counting_model(cuda))


def identity_unet(path: Path) -> Path:
    """A tiny ONNX model with UNet-328's inputs and output: the first 3 image channels plus the mean of
    the audio, so that both inputs reach the output."""
    onnx = pytest.importorskip("onnx", reason="needs the convert extra: pip install onnx")
    helper, tensor = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["starts"], value_ints=[0]),
            helper.make_node("Constant", [], ["ends"], value_ints=[3]),
            helper.make_node("Constant", [], ["axes"], value_ints=[1]),
            helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["real"]),
            helper.make_node("ReduceMean", ["audio"], ["level"], keepdims=1),
            helper.make_node("Add", ["real", "level"], ["output"]),
        ],
        "unet_double",
        [
            helper.make_tensor_value_info("input", tensor.FLOAT, ["N", 6, 320, 320]),
            helper.make_tensor_value_info("audio", tensor.FLOAT, ["N", 32, 16, 16]),
        ],
        [helper.make_tensor_value_info("output", tensor.FLOAT, ["N", 3, 320, 320])],
    )
    model: Any = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_resident_call_runs_the_model_on_bound_inputs(tmp_path: Path) -> None:
    path = identity_unet(tmp_path / "unet.onnx")
    unet = UnetModel.of(open_session(path, ["CPUExecutionProvider"]), path)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, 6, 320, 320)).astype(np.float32)
    audio = rng.uniform(0, 2, (2, 32, 16, 16)).astype(np.float32)
    call = bench_engine.ResidentCall(unet, images, audio, "cpu")
    call()
    np.testing.assert_allclose(call.output(), unet.run(images, audio), rtol=1e-6)
    assert bench_engine.per_call_ms(call, repeats=2) > 0


def test_the_half_precision_copy_is_timed_by_batch_and_compared_with_float32(tmp_path: Path) -> None:
    from lipsync_server.half_precision import to_half_precision

    path = identity_unet(tmp_path / "unet.onnx")
    to_half_precision(path, tmp_path / "unet.fp16.onnx")
    cpu = ["CPUExecutionProvider"]
    unet = UnetModel.of(open_session(path, cpu), path)
    images = np.random.default_rng(0).uniform(0, 1, (1, 6, 320, 320)).astype(np.float32)
    figures: Any = bench_engine.half_precision_figures(
        unet, tmp_path / "unet.fp16.onnx", cpu, images, [1, 2], repeats=1, warmup=0
    )
    assert sorted(figures["inference_by_batch"]) == ["1", "2"]
    assert figures["provider"] == "CPUExecutionProvider"
    difference = figures["vs_fp32"]
    assert 0 < difference["max_abs"] < 1e-2, "float16 rounding, and only that"
    assert difference["mouth_max_levels"] <= 1
