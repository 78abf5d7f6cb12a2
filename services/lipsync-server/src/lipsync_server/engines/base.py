"""The small interface every engine implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from lipsync_server.packages.model import ModelPackage

T = TypeVar("T")
R = TypeVar("R")


class FrameMap(Protocol):
    """Applies a function to each frame's item of a batch, in order: frame after frame (`serial_map`),
    or spread over threads (inference.FramePool.map). The function must not wait for other frames."""

    def __call__(self, function: Callable[[T], R], items: Sequence[T], /) -> list[R]: ...


def serial_map(function: Callable[[T], R], items: Sequence[T], /) -> list[R]:
    """The items' results frame after frame, in the calling thread."""
    return [function(item) for item in items]


@dataclass(frozen=True)
class FrameJob:
    """One frame to render: the template frame and the audio features that drive its mouth.

    `features` None means "the package's own features for this frame".
    """

    frame_id: int
    features: NDArray[np.float32] | None = None


class SpeechStream(Protocol):
    """Features of frames 0, 1, … of audio arriving in pieces (e.g. unet328's AveStream)."""

    def push(self, wave: NDArray[np.float32]) -> list[NDArray[np.float32]]: ...

    def finish(self) -> list[NDArray[np.float32]]: ...


class Engine(Protocol):
    """Renders face regions. Called from a worker thread, never on the event loop."""

    name: str
    # True when frames rendered together cost less than one by one (neural engines): the batcher then
    # waits up to --batch-wait-ms to fill a batch.
    batches_frames: bool

    def prepare(self, package: ModelPackage) -> ModelPackage:
        """Validate `package` for this engine and return it ready to run (e.g. with features computed
        from its audio). Raises PackageError naming the file and the problem."""
        ...

    def warm_up(self, package: ModelPackage) -> None:
        """Run once before the model is reported SERVING (first inference, caches)."""
        ...

    def features_from_audio(
        self, package: ModelPackage, pcm: NDArray[np.int16], sample_rate: int, center_sample: int
    ) -> NDArray[np.float32]:
        """Features for one frame whose instant is `center_sample` of `pcm` (mono)."""
        ...

    def speech_stream(self, package: ModelPackage) -> SpeechStream | None:
        """A stream for `Speak` when a frame hears audio beyond its own 1/fps (unet328: 0.45 s ahead);
        None when each frame's own audio is enough (sprite)."""
        ...

    def device(self, package: ModelPackage) -> str:
        """Where `package`'s frames are inferred: "cpu" or "cuda" (the seed's `GetStats.device`)."""
        ...

    def infer(
        self, package: ModelPackage, jobs: Sequence[FrameJob], map_frames: FrameMap = serial_map
    ) -> list[NDArray[np.uint8]]:
        """The face region of each job's frame, lip-synced: box-sized H×W×3 BGR uint8 arrays. Per-frame
        work (model input, compositing) may go through `map_frames`."""
        ...
