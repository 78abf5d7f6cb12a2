"""The unet328 engine on CUDA never shows one ONNX Runtime session two batch sizes (ShapeStableSession).

ONNX Runtime's CUDA convolutions rebuild their cuDNN plans whenever the input shape changes between
calls (seconds for UNet-328), so each power-of-two bucket gets its own session. The sessions here are
doubles that claim to run on CUDA, so the logic runs on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neural_doubles import PROJECTION_TOLERANCE, EncoderSessionDouble, UnetSessionDouble
from numpy.typing import NDArray
from package_factory import PLACEHOLDER_MODEL, write_synctalk_package

from lipsync_server.ave import AudioEncoder
from lipsync_server.engines import unet328
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.unet328 import ShapeStableSession, Unet328Engine, UnetModel, shape_stable
from lipsync_server.packages.loader import load_package

CUDA = "CUDAExecutionProvider"


class CudaUnetDouble(UnetSessionDouble):
    def get_providers(self) -> list[str]:
        return [CUDA, "CPUExecutionProvider"]


class CudaEncoderDouble(EncoderSessionDouble):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def get_providers(self) -> list[str]:
        return [CUDA, "CPUExecutionProvider"]

    def run(self, names: object, feeds: dict[str, NDArray[np.float32]]) -> list[NDArray[np.float32]]:
        self.batches.append(next(iter(feeds.values())).shape[0])
        return super().run(names, feeds)


class Opened:
    """`open_model` that opens a new CUDA session double per call, kept by file name."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[Any]] = {"unet": [], "encoder": []}

    def __call__(self, path: Path, providers: object) -> Any:
        if path.name == "audio_encoder.onnx":
            encoder = CudaEncoderDouble()
            self.sessions["encoder"].append(encoder)
            return encoder
        unet = CudaUnetDouble()
        self.sessions["unet"].append(unet)
        return unet


def batches_seen(session: UnetSessionDouble) -> set[int]:
    return {images.shape[0] for images, _audio in session.calls}


def test_each_bucket_has_its_own_session_and_the_padding_never_reaches_the_answer() -> None:
    opened: list[CudaUnetDouble] = []

    def another() -> CudaUnetDouble:
        opened.append(CudaUnetDouble())
        return opened[-1]

    first = CudaUnetDouble()
    model = UnetModel.of(shape_stable(first, another), Path("unet.onnx"))
    assert isinstance(model.session, ShapeStableSession)
    rng = np.random.default_rng(0)
    for batch in (3, 1, 3, 8, 5, 2):
        images = rng.uniform(0, 0.9, (batch, 6, 320, 320)).astype(np.float32)
        audio = rng.uniform(0, 2, (batch, 32, 16, 16)).astype(np.float32)
        out = model.run(images, audio)
        np.testing.assert_array_equal(out, images[:, :3], err_msg=f"batch {batch}")
    assert model.session.buckets == [1, 2, 4, 8]
    sessions = [first, *opened]
    assert len(sessions) == 4, "one session per bucket, the first one reused"
    assert [batches_seen(session) for session in sessions] == [{4}, {1}, {8}, {2}]
    padded = first.calls[0][0]
    assert padded.shape[0] == 4, "batch 3 ran as 4"
    assert not padded[3].any(), "the fourth frame is zeros"


def test_cpu_sessions_and_fixed_batch_models_are_left_alone() -> None:
    def never() -> Any:
        raise AssertionError("no other session may be opened")

    cpu = UnetSessionDouble()
    assert shape_stable(cpu, never) is cpu
    fixed = CudaUnetDouble(batch=1)
    assert shape_stable(fixed, never) is fixed


def test_the_encoder_pads_its_windows_to_the_bucket() -> None:
    sessions: list[CudaEncoderDouble] = []

    def another() -> CudaEncoderDouble:
        sessions.append(CudaEncoderDouble())
        return sessions[-1]

    first = CudaEncoderDouble()
    encoder = AudioEncoder(shape_stable(first, another), Path("audio_encoder.onnx"))
    windows = np.random.default_rng(1).normal(0, 1, (3, 80, 16)).astype(np.float32)
    features = encoder(windows)
    assert features.shape == (3, 512)
    np.testing.assert_allclose(
        features, first.encoder(windows), rtol=PROJECTION_TOLERANCE, atol=PROJECTION_TOLERANCE
    )
    assert first.batches == [4]
    encoder(windows[:1])
    assert [s.batches for s in sessions] == [[1]]


def test_the_cuda_warm_up_builds_every_bucket_up_to_the_default_max_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class CudaRuntime:
        @staticmethod
        def get_available_providers() -> list[str]:
            return [CUDA, "CPUExecutionProvider"]

    monkeypatch.setattr(unet328, "_onnxruntime", lambda: CudaRuntime)
    root = tmp_path / "p"
    write_synctalk_package(root, frame_count=12, width=320, height=240)
    (root / "checkpoint").mkdir(exist_ok=True)
    (root / "checkpoint" / "audio_encoder.onnx").write_bytes(PLACEHOLDER_MODEL)
    opened = Opened()
    engine = Unet328Engine("cuda", open_model=opened)
    package = engine.prepare(load_package(root))
    engine.warm_up(package)
    unets = opened.sessions["unet"]
    assert [batches_seen(session) for session in unets] == [{1}, {2}, {4}, {8}]
    assert unet328.WARM_BATCH == 8
    encoder_batches = {b for session in opened.sessions["encoder"] for b in session.batches}
    assert encoder_batches == {1, 2, 4, 8, 16, 32, 64}
    assert all(len(set(session.batches)) == 1 for session in opened.sessions["encoder"])
    regions = engine.infer(package, [FrameJob(i) for i in range(3)])
    assert len(regions) == 3
    assert len(unets) == 4, "a batch of 3 runs on the warmed bucket of 4"
