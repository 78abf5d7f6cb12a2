"""Test doubles for the neural path: an AVE encoder and ONNX Runtime sessions that need no model file.

- `ProjectionEncoderDouble`: mel windows [N, 80, 16] -> [N, 512] by a fixed random projection and ReLU,
  deterministic and cheap, for tests of the feature plumbing (not of the encoder's arithmetic).
- `UnetSessionDouble`: answers like a UNet-328 session and returns the real ROI it was given (input
  channels 0-2) as its prediction, scaled by `gain`, recording every call.
- `EncoderSessionDouble`: answers like an AVE encoder session, with the projection above.
- `open_model_double`: the engine's `open_model`, handing out those sessions by file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

# How closely two runs of the projection below agree when they are given the same windows in batches of
# different sizes (a whole file against one request's window, a padded bucket against its frames). Each
# feature is a float32 sum of 1,280 products of order 1, and BLAS kernels sum a matrix product of another
# shape in another order: the results then differ by a few float32 ulps (3.5e-6 seen on one CPU). 1e-5,
# absolute and relative, allows that many times over, while any plumbing error (a window one hop off, a
# wrong row or channel) moves features by 1e-2 or more.
PROJECTION_TOLERANCE = 1e-5


class ProjectionEncoderDouble:
    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._projection = (rng.standard_normal((80 * 16, 512)) / 40).astype(np.float32)
        self.calls: list[int] = []

    def __call__(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        self.calls.append(windows.shape[0])
        flat = windows.reshape(windows.shape[0], -1)
        return np.maximum(flat @ self._projection + 1.0, 0.0).astype(np.float32)


@dataclass(frozen=True)
class ArgDouble:
    """What `session.get_inputs()` / `get_outputs()` items carry."""

    name: str
    shape: list[int | str]


@dataclass
class UnetSessionDouble:
    gain: float = 1.0
    image_name: str = "input"
    audio_name: str = "audio"
    batch: int | str = "batch"
    calls: list[tuple[NDArray[np.float32], NDArray[np.float32]]] = field(default_factory=list)

    def get_inputs(self) -> list[ArgDouble]:
        return [
            ArgDouble(self.image_name, [self.batch, 6, 320, 320]),
            ArgDouble(self.audio_name, [self.batch, 32, 16, 16]),
        ]

    def get_outputs(self) -> list[ArgDouble]:
        return [ArgDouble("output", [self.batch, 3, 320, 320])]

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def run(self, names: object, feeds: dict[str, NDArray[np.float32]]) -> list[NDArray[np.float32]]:
        images, audio = feeds[self.image_name], feeds[self.audio_name]
        if isinstance(self.batch, int) and images.shape[0] != self.batch:
            raise ValueError(f"fixed batch {self.batch}, got {images.shape[0]}")
        self.calls.append((images.copy(), audio.copy()))
        return [np.clip(images[:, :3] * self.gain, 0.0, 0.999)]


@dataclass
class EncoderSessionDouble:
    encoder: ProjectionEncoderDouble = field(default_factory=ProjectionEncoderDouble)

    def get_inputs(self) -> list[ArgDouble]:
        return [ArgDouble("mel_spectrogram", ["batch_size", 1, 80, 16])]

    def get_outputs(self) -> list[ArgDouble]:
        return [ArgDouble("audio_features", ["batch_size", 512])]

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def run(self, names: object, feeds: dict[str, NDArray[np.float32]]) -> list[NDArray[np.float32]]:
        (windows,) = feeds.values()
        return [self.encoder(windows[:, 0])]


@dataclass
class ModelFilesDouble:
    """Sessions by model file name, as `open_model`; records the providers asked for."""

    sessions: dict[str, object]
    providers: list[Sequence[str]] = field(default_factory=list)

    def __call__(self, path: Path, providers: Sequence[str]) -> object:
        self.providers.append(providers)
        return self.sessions[path.name]


def open_model_double(
    unet: UnetSessionDouble, encoder: EncoderSessionDouble | None = None
) -> ModelFilesDouble:
    sessions: dict[str, object] = {"model_best.onnx": unet, "unet.onnx": unet}
    if encoder is not None:
        sessions["audio_encoder.onnx"] = encoder
    return ModelFilesDouble(sessions)
