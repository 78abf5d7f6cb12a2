"""Test doubles for the server's unit tests: a tiny in-memory package and an engine that paints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lipsync_server.engines.base import FrameJob, FrameMap, serial_map
from lipsync_server.packages.model import NATIVE_FORMAT, ArrayFrames, ModelPackage


def tiny_package(frames: int = 4, width: int = 64, height: int = 48, name: str = "tiny") -> ModelPackage:
    """Frames of one grey level each (frame i = 10·i), a 16×16 box at (8, 8)."""
    pixels = np.stack([np.full((height, width, 3), 10 * i, np.uint8) for i in range(frames)])
    boxes = np.tile(np.array([8, 8, 24, 24], np.int32), (frames, 1))
    return ModelPackage(name, "paint", NATIVE_FORMAT, Path("/nonexistent"), 25.0, ArrayFrames(pixels), boxes)


@dataclass
class PaintEngineDouble:
    """Paints the face region with 200 + the first feature (or 255 with no features)."""

    name: str = "paint"
    batches_frames: bool = False

    def prepare(self, package: ModelPackage) -> ModelPackage:
        return package

    def warm_up(self, package: ModelPackage) -> None:
        return None

    def features_from_audio(
        self, package: ModelPackage, pcm: NDArray[np.int16], sample_rate: int, center_sample: int
    ) -> NDArray[np.float32]:
        return np.array([min(55, int(np.abs(pcm).max()) // 100)], np.float32)

    def speech_stream(self, package: ModelPackage) -> None:
        return None

    def device(self, package: ModelPackage) -> str:
        return "cpu"

    def infer(
        self, package: ModelPackage, jobs: Sequence[FrameJob], map_frames: FrameMap = serial_map
    ) -> list[NDArray[np.uint8]]:
        def paint(job: FrameJob) -> NDArray[np.uint8]:
            x1, y1, x2, y2 = (int(v) for v in package.boxes[job.frame_id])
            value = 255 if job.features is None else 200 + int(job.features[0])
            return np.full((y2 - y1, x2 - x1, 3), value, np.uint8)

        return map_frames(paint, jobs)
