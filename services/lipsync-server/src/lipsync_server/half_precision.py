"""Half-precision (float16) copies of the unet328 engine's ONNX models, and how far they are from float32.

A half-precision model sits beside its float32 model as `<name>.fp16.onnx` (`half_precision_path`):
`checkpoint/model_best.fp16.onnx` beside `checkpoint/model_best.onnx`, `unet.fp16.onnx` beside a
native package's `unet.onnx`. The unet328 engine runs it on CUDA when it is there (`--precision`), and
the float32 model on the CPU.

The copy is ONNX Runtime's float16 conversion (`onnxruntime.transformers.float16`) with the model's
inputs and outputs kept float32, so the engine feeds both models alike; weights and every tensor inside
become float16. It needs the `onnx` package (the `convert` extra), never the server.

What runs where: ONNX Runtime's CPU provider has no float16 convolution kernels on x86, so on the CPU
it casts the half-precision weights up and computes in float32 (its cast insertion). A check on the CPU
therefore measures the rounding of the weights to float16; the rounding of activations in float16
arithmetic only happens on a GPU, and the GPU benchmark (`loadtests/bench_engine.py --fp16`) measures
the same differences there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

HALF_SUFFIX = ".fp16"
# Largest |float16 - float32| of a model's output accepted by `convert --fp16`. The UNet's output is in
# (0, 1) (a sigmoid), so 1e-2 is 2.5 of its 8-bit levels: a few times what rounding to float16 gives on
# the reference weights (tests/neural/test_half_precision.py), far below a wrong conversion.
DEFAULT_HALF_TOLERANCE = 1e-2
# The mouth in UNet-328's 320×320 ROI: the lower half of the rectangle the model's masked input blacks
# out (unet328.MASK_ROWS, MASK_COLUMNS): rows 157…309, columns 5…314.
MOUTH_ROWS = slice(157, 310)
MOUTH_COLUMNS = slice(5, 315)


def half_precision_path(path: Path) -> Path:
    """Where the half-precision copy of model file `path` lives: `name.fp16.onnx` beside `name.onnx`."""
    return path.with_name(f"{path.stem}{HALF_SUFFIX}{path.suffix}")


def to_half_precision(source: Path, output: Path) -> None:
    """Write the float16 copy of float32 ONNX model `source` to `output` (atomically); inputs and
    outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=output.name, suffix=".tmp", dir=output.parent)
    os.close(handle)
    try:
        onnx.save(half, temporary)
        os.replace(temporary, output)
    finally:
        Path(temporary).unlink(missing_ok=True)


@dataclass(frozen=True)
class MouthDifference:
    """How far two UNet predictions are apart where a viewer looks, in the 8-bit levels the engine
    composites (×255, truncated)."""

    mean_levels: float
    max_levels: int
    # Share of the mouth's pixel values that differ at all.
    changed: float


def mouth_difference(reference: NDArray[np.float32], other: NDArray[np.float32]) -> MouthDifference:
    """The mouth region's difference between two UNet outputs [N, 3, 320, 320] as the engine turns
    them into pixels (`unet328.face_region`: ×255, truncated to uint8)."""
    levels = [
        (np.asarray(p, dtype=np.float32)[:, :, MOUTH_ROWS, MOUTH_COLUMNS] * np.float32(255.0)).astype(
            np.uint8
        )
        for p in (reference, other)
    ]
    difference = np.abs(levels[0].astype(np.int16) - levels[1].astype(np.int16))
    return MouthDifference(float(difference.mean()), int(difference.max()), float((difference > 0).mean()))


def max_difference(
    reference: Path, candidate: Path, names: Sequence[str], inputs: Sequence[NDArray[np.float32]]
) -> tuple[float, NDArray[np.float32], NDArray[np.float32]]:
    """Largest |candidate - reference| of two models' first outputs on `inputs` (CPU provider), and the
    two outputs."""
    import onnxruntime

    feeds = dict(zip(names, inputs, strict=True))
    outputs = []
    for path in (reference, candidate):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(np.asarray(session.run(None, feeds)[0], dtype=np.float32))
    return float(np.abs(outputs[1] - outputs[0]).max()), outputs[0], outputs[1]
