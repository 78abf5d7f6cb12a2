"""What a loaded model package is, whatever its on-disk layout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import numpy as np
from numpy.typing import NDArray

NATIVE_FORMAT = "lipsync-package/1"
SYNCTALK_FORMAT = "synctalk2d"


class FrameStore(Protocol):
    """The base (template) video frames of a package, BGR uint8, all the same size."""

    @property
    def count(self) -> int: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def frame(self, index: int) -> NDArray[np.uint8]:
        """Frame `index` as a read-only H×W×3 BGR array; `index` is already range-checked."""
        ...


@dataclass(frozen=True)
class ArrayFrames:
    """Frames held decoded in memory as one N×H×W×3 array."""

    pixels: NDArray[np.uint8]

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4 or self.pixels.shape[3] != 3:
            raise ValueError(f"frames must be N×H×W×3, got {self.pixels.shape}")
        self.pixels.flags.writeable = False

    @property
    def count(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    def frame(self, index: int) -> NDArray[np.uint8]:
        return cast(NDArray[np.uint8], self.pixels[index])


@dataclass(frozen=True, eq=False)
class ModelPackage:
    """A validated model package, ready for an engine.

    `boxes[i]` is frame i's face box `[x1, y1, x2, y2]` (x2/y2 exclusive) inside the frame.
    `audio_features[i]` are frame i's features for `engine` (sprite: `[openness, roundness]`;
    unet328: the AVE row), or None when the package carries only audio or nothing.
    """

    name: str
    engine: str
    format: str
    root: Path
    fps: float
    frames: FrameStore
    boxes: NDArray[np.int32]
    audio_features: NDArray[np.float32] | None = None
    audio_path: Path | None = None
    videos: tuple[str, ...] = ()
    model_files: Mapping[str, Path] = field(default_factory=dict)
    # Engine-specific settings from the manifest (e.g. the sprite's mouth position in the box).
    engine_options: Mapping[str, object] = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return self.frames.count

    @property
    def width(self) -> int:
        return self.frames.width

    @property
    def height(self) -> int:
        return self.frames.height

    @property
    def audio_duration_s(self) -> float:
        return self.frame_count / self.fps if self.audio_path is not None else 0.0
