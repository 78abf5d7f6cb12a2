"""Bound host buffers (engines/staging.py): what the unet328 engine does on CUDA, run here with ordinary
host buffers, on the real converted UNet through ONNX Runtime's I/O binding on the CPU and on session
doubles that claim CUDA. Page-locked memory itself needs a GPU; only the allocator differs there."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ConvertedModels
from neural_doubles import UnetSessionDouble
from numpy.typing import NDArray
from package_factory import write_synctalk_package
from reference_weights import load_vector

from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.staging import BoundStaging, HostStaging, host_buffer
from lipsync_server.engines.unet328 import (
    ShapeStableSession,
    Unet328Engine,
    UnetModel,
    open_session,
    staging_for,
)
from lipsync_server.packages.loader import load_package

UNET_VECTOR = load_vector("unet")
CPU = ["CPUExecutionProvider"]
CUDA = "CUDAExecutionProvider"


class CountingAllocator:
    """Host buffers from ONNX Runtime's CPU allocator, counted."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self._allocate = host_buffer("cpu")

    def __call__(self, shape: tuple[int, ...]) -> tuple[Any, NDArray[np.float32]]:
        self.shapes.append(shape)
        return self._allocate(shape)


def test_bound_buffers_give_the_sessions_own_answer_and_are_reused_per_bucket(
    converted_models: ConvertedModels,
) -> None:
    path = converted_models.unet
    sessions = ShapeStableSession(open_session(path, CPU), lambda: open_session(path, CPU))
    unet = UnetModel.of(sessions, path)
    allocate = CountingAllocator()
    staging = BoundStaging(
        sessions.session_for, ShapeStableSession.bucket, ("input", "audio", "output"), allocate
    )
    for _ in range(2):
        with staging.batch(1) as batch:
            batch.images[0] = UNET_VECTOR["x"][0]
            batch.audio[0] = UNET_VECTOR["a"][0]
            bound = batch.run().copy()
        np.testing.assert_allclose(bound, UNET_VECTOR["y"].astype(np.float32), rtol=0, atol=5e-4)
        np.testing.assert_array_equal(bound, unet.run(UNET_VECTOR["x"], UNET_VECTOR["a"]))
    assert allocate.shapes == [(1, 6, 320, 320), (1, 32, 16, 16), (1, 3, 320, 320)], "allocated once"


class BindingDouble:
    def __init__(self) -> None:
        self.inputs: dict[str, NDArray[np.float32]] = {}
        self.outputs: dict[str, NDArray[np.float32]] = {}

    def bind_ortvalue_input(self, name: str, value: NDArray[np.float32]) -> None:
        self.inputs[name] = value

    def bind_ortvalue_output(self, name: str, value: NDArray[np.float32]) -> None:
        self.outputs[name] = value


class BoundCudaUnetDouble(UnetSessionDouble):
    """A CUDA session double that also runs through I/O binding, counting those runs."""

    bound_runs = 0

    def get_providers(self) -> list[str]:
        return [CUDA, "CPUExecutionProvider"]

    def io_binding(self) -> BindingDouble:
        return BindingDouble()

    def run_with_iobinding(self, binding: BindingDouble) -> None:
        BoundCudaUnetDouble.bound_runs += 1
        (out,) = self.run(
            None, {self.image_name: binding.inputs["input"], self.audio_name: binding.inputs["audio"]}
        )
        binding.outputs["output"][...] = out


def test_a_batch_padded_to_its_bucket_binds_zeros_after_its_frames_whatever_was_there() -> None:
    session = BoundCudaUnetDouble()
    staging = BoundStaging(
        lambda bucket: session, ShapeStableSession.bucket, ("input", "audio", "output"), array_buffers
    )
    with staging.batch(4) as batch:
        batch.images[:] = np.nan  # an earlier batch's values
    with staging.batch(3) as batch:
        assert batch.images.shape == (3, 6, 320, 320), "a view of the bucket of 4"
        batch.images[:] = 0.5
        batch.audio[:] = 1.0
        out = batch.run()
    images, audio = session.calls[-1]
    assert images.shape == (4, 6, 320, 320)
    assert (images[3] == 0).all()
    assert (audio[3] == 0).all()
    assert (images[:3] == 0.5).all()
    assert out.shape == (3, 3, 320, 320)


class PlainCudaUnetDouble(UnetSessionDouble):
    def get_providers(self) -> list[str]:
        return [CUDA, "CPUExecutionProvider"]


def array_buffers(shape: tuple[int, ...]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    array = np.full(shape, 7.0, np.float32)  # stale values: the engine must write every frame's input
    return array, array


def engine_on_cuda(session_type: type[UnetSessionDouble]) -> Unet328Engine:
    return Unet328Engine(
        open_model=lambda path, providers: session_type(),
        providers=lambda device: [CUDA, "CPUExecutionProvider"],
        host_buffers=array_buffers,
    )


def test_on_cuda_the_engine_writes_frames_into_bound_buffers_and_renders_as_without_them(
    tmp_path: Path,
) -> None:
    write_synctalk_package(tmp_path / "p")
    package = load_package(tmp_path / "p")
    bound = engine_on_cuda(BoundCudaUnetDouble)
    prepared = bound.prepare(package)
    runs = BoundCudaUnetDouble.bound_runs
    jobs = [FrameJob(i) for i in (0, 3, 5)]
    regions = bound.infer(prepared, jobs)
    assert BoundCudaUnetDouble.bound_runs == runs + 1, "one bound run for the batch"
    plain = Unet328Engine("cpu", open_model=lambda path, providers: UnetSessionDouble())
    expected = plain.infer(plain.prepare(package), jobs)
    for region, want in zip(regions, expected, strict=True):
        np.testing.assert_array_equal(region, want)


def test_where_binding_fails_the_engine_says_why_and_copies_as_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_synctalk_package(tmp_path / "p")
    engine = engine_on_cuda(PlainCudaUnetDouble)  # no io_binding: as a runtime that cannot bind
    with caplog.at_level(logging.WARNING):
        package = engine.prepare(load_package(tmp_path / "p"))
    assert "page-locked I/O binding failed" in caplog.text
    assert len(engine.infer(package, [FrameJob(1), FrameJob(2)])) == 2


def test_cpu_sessions_and_fixed_batch_models_copy_from_plain_arrays() -> None:
    cpu = UnetModel.of(UnetSessionDouble(), Path("unet.onnx"))
    assert isinstance(staging_for(cpu, array_buffers), HostStaging)
    fixed = UnetModel.of(PlainCudaUnetDouble(batch=1), Path("unet.onnx"))
    assert isinstance(staging_for(fixed, array_buffers), HostStaging)
