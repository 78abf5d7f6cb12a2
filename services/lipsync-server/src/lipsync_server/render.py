"""One frame, start to finish: audio features → engine → composite → JPEG, with the time of each stage.

Runs in a worker thread. The engine only produces the face region; compositing and encoding are shared
by every engine. A full frame is spliced (full_frames): only the JPEG restart intervals under the face
box are encoded, so its cost follows the face area, not the frame area.

The per-frame stages (audio features, the engine's per-frame work, composite and encode) go through
`map_frames`: frame after frame by default, or spread over the server's threads for the batches of a
neural engine (inference.InferenceRunner), where they would otherwise leave the GPU waiting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from lipsync_server.audio import SAMPLE_RATE, resample
from lipsync_server.engines.base import Engine, FrameJob, FrameMap, serial_map
from lipsync_server.full_frames import spliced_frames
from lipsync_server.jpeg import encode_jpeg
from lipsync_server.packages.model import ModelPackage
from lipsync_server.telemetry import (
    BATCH_SIZE,
    IMAGE_BYTES,
    JPEG_QUALITY,
    OUTPUT_MODE,
    SpanParent,
    stage_span,
)


class OutputMode(Enum):
    FULL_FRAME = "full_frame"
    FACE_CROP = "face_crop"
    # The face region's pixels, not encoded: a session's video encoder composites and encodes them.
    VIDEO = "video"


@dataclass(frozen=True)
class AudioInput:
    """Mono PCM16 audio around a frame; the frame's instant is `center_sample`."""

    pcm: NDArray[np.int16]
    sample_rate: int
    center_sample: int


@dataclass(frozen=True)
class RenderRequest:
    frame_id: int
    output_mode: OutputMode = OutputMode.FULL_FRAME
    jpeg_quality: int = 85
    audio: AudioInput | None = None
    # Precomputed features (e.g. from a Speak session); beats `audio`.
    features: NDArray[np.float32] | None = None
    # The call's span, for this frame's stage spans; None when not traced.
    trace: SpanParent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StageTimings:
    audio_features_ms: float
    inference_ms: float
    composite_ms: float
    encode_ms: float
    batch_size: int

    @property
    def total_ms(self) -> float:
        return self.audio_features_ms + self.inference_ms + self.composite_ms + self.encode_ms


@dataclass(frozen=True)
class RenderedFrame:
    image: bytes
    width: int
    height: int
    bounds: tuple[int, int, int, int]
    timings: StageTimings
    # OutputMode.VIDEO: the face region (box-sized BGR), and `image` is empty.
    pixels: NDArray[np.uint8] | None = None


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def render(
    engine: Engine,
    package: ModelPackage,
    requests: Sequence[RenderRequest],
    map_frames: FrameMap = serial_map,
) -> list[RenderedFrame]:
    """Render `requests` of one package as one engine batch. Frame ids must already be in range."""
    batch = {BATCH_SIZE: len(requests)}
    start = time.perf_counter()

    def job(request: RenderRequest) -> FrameJob:
        features = request.features
        if features is None and request.audio is not None:
            audio = request.audio
            # Engines hear 16 kHz; other rates a client sent are resampled here, off the event loop.
            pcm = resample(audio.pcm, audio.sample_rate, SAMPLE_RATE)
            center = audio.center_sample * SAMPLE_RATE // audio.sample_rate
            features = engine.features_from_audio(package, pcm, SAMPLE_RATE, center)
        return FrameJob(request.frame_id, features)

    with stage_span("audio_features", requests, batch):
        # Only audio windows cost anything here; other frames are not worth a hand-off to another thread.
        if any(request.features is None and request.audio is not None for request in requests):
            jobs = map_frames(job, requests)
        else:
            jobs = [job(request) for request in requests]
    features_ms = _ms_since(start) / len(requests)

    start = time.perf_counter()
    with stage_span("inference", requests, batch):
        regions = engine.infer(package, jobs, map_frames)
    inference_ms = _ms_since(start) / len(requests)

    def finish(item: tuple[RenderRequest, NDArray[np.uint8]]) -> RenderedFrame:
        request, region = item
        return _finish(package, request, region, features_ms, inference_ms, len(requests))

    return map_frames(finish, list(zip(requests, regions, strict=True)))


def _finish(
    package: ModelPackage,
    request: RenderRequest,
    region: NDArray[np.uint8],
    features_ms: float,
    inference_ms: float,
    batch_size: int,
) -> RenderedFrame:
    """Composite one frame's face `region` and encode it; a video frame's region goes to its session's
    encoder as it is."""
    x1, y1, x2, y2 = (int(v) for v in package.boxes[request.frame_id])
    if request.output_mode is OutputMode.VIDEO:
        timings = StageTimings(features_ms, inference_ms, 0.0, 0.0, batch_size)
        return RenderedFrame(b"", x2 - x1, y2 - y1, (x1, y1, x2, y2), timings, region)
    start = time.perf_counter()
    spliced = None
    with stage_span("composite", [request], {OUTPUT_MODE: request.output_mode.value}):
        if request.output_mode is OutputMode.FACE_CROP:
            image = region
        elif (spliced := spliced_frames(package, request.jpeg_quality)) is None:
            image = package.frames.frame(request.frame_id).copy()
            image[y1:y2, x1:x2] = region
        else:
            image = region  # the splice composites the face into the cached frame's tiles
    composite_ms = _ms_since(start)
    start = time.perf_counter()
    with stage_span("encode", [request], {JPEG_QUALITY: request.jpeg_quality}) as encode:
        if spliced is None:
            data = encode_jpeg(image, request.jpeg_quality)
        else:
            data = spliced.encode(request.frame_id, region)
        encode.set_attribute(IMAGE_BYTES, len(data))
    encode_ms = _ms_since(start)
    timings = StageTimings(features_ms, inference_ms, composite_ms, encode_ms, batch_size)
    if request.output_mode is OutputMode.FACE_CROP:
        width, height = x2 - x1, y2 - y1
    else:
        width, height = package.width, package.height
    return RenderedFrame(data, width, height, (x1, y1, x2, y2), timings)
