"""What both gRPC services share: model lookup, validation, rendering, stats and admin loading.

The servicers only translate between protobuf messages and these calls.
"""

from __future__ import annotations

import functools
import io
import threading
import time
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from lipsync_server.audio import REQUEST_SAMPLE_RATES, SAMPLE_RATE
from lipsync_server.engines.base import Engine
from lipsync_server.errors import (
    FailedPreconditionError,
    FrameOutOfRangeError,
    InvalidArgumentError,
    PermissionDeniedError,
)
from lipsync_server.inference import InferenceRunner
from lipsync_server.jpeg import encode_jpeg
from lipsync_server.metrics import ServerMetrics
from lipsync_server.registry import ModelEntry, ModelRegistry, PackageLoader, ReadyModel, load_model
from lipsync_server.render import AudioInput, RenderedFrame, RenderRequest
from lipsync_server.settings import Settings

MAX_AUDIO_WINDOW_S = 2.0
# Replies may be large (a batch of full frames); requests need not be: the largest valid one, an
# InferBatch of --max-queue frames with 2 s of audio each, is 4 MiB at the default queue of 64.
MAX_SEND_BYTES = 64 * 1024 * 1024
MAX_RECEIVE_BYTES = 8 * 1024 * 1024


@dataclass
class ModelStats:
    """Per-model inference counters for the seed-compatible GetStats."""

    requests: int = 0
    total_ms: float = 0.0
    min_ms: float = float("inf")
    max_ms: float = 0.0

    def add(self, inference_ms: float) -> None:
        self.requests += 1
        self.total_ms += inference_ms
        self.min_ms = min(self.min_ms, inference_ms)
        self.max_ms = max(self.max_ms, inference_ms)


@dataclass
class ServerCore:
    settings: Settings
    registry: ModelRegistry
    runner: InferenceRunner
    metrics: ServerMetrics
    load_package: PackageLoader
    engines: Mapping[str, Engine]
    started_at: float = field(default_factory=time.monotonic)
    serving: bool = False
    stats: dict[str, ModelStats] = field(default_factory=dict)
    _stats_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at

    def model(self, name: str) -> ReadyModel:
        return self.registry.get(name)

    def check_frame(self, name: str, model: ReadyModel, frame_id: int) -> None:
        if not 0 <= frame_id < model.package.frame_count:
            raise FrameOutOfRangeError(name, frame_id, model.package.frame_count)

    def check_batch(self, count: int, what: str) -> None:
        """Refuse a call carrying more frames than the queue can ever hold at once: it could not be
        served whole, and its size alone would cost memory and time before the queue refused it."""
        limit = self.settings.max_queue
        if count > limit:
            raise InvalidArgumentError(
                f"{what} asks for {count} frames; one call may ask for at most {limit} (--max-queue)"
            )

    def quality(self, requested: int) -> int:
        if requested == 0:
            return self.settings.jpeg_quality
        if not 1 <= requested <= 100:
            raise InvalidArgumentError(f"jpeg_quality {requested} is outside 1..100 (0 = server default)")
        return requested

    async def render(self, name: str, requests: Sequence[RenderRequest]) -> list[RenderedFrame]:
        """Render frames of model `name`; validates every frame id first."""
        model = self.model(name)
        for request in requests:
            self.check_frame(name, model, request.frame_id)
        frames = await self.runner.render(model, requests)
        if requests:
            self.metrics.record_frames(name, requests[0].output_mode.value, frames)
        with self._stats_lock:
            stats = self.stats.setdefault(name, ModelStats())
            for frame in frames:
                stats.add(frame.timings.inference_ms)
        return frames

    async def base_frame(self, name: str, frame_id: int, quality: int) -> tuple[bytes, int, int]:
        """The unmodified template frame as JPEG, with its width and height."""
        model = self.model(name)
        self.check_frame(name, model, frame_id)
        pixels = model.package.frames.frame(frame_id)
        data = await self.runner.call(encode_jpeg, pixels, self.quality(quality))
        return data, model.package.width, model.package.height

    async def audio(self, name: str) -> tuple[bytes, int, float]:
        """The package's WAV file as stored, with its sample rate and duration."""
        package = self.model(name).package
        if package.audio_path is None:
            raise FailedPreconditionError(f"model {name!r} has no audio track")
        data = await self.runner.call(package.audio_path.read_bytes)
        with wave.open(io.BytesIO(data)) as reader:
            rate, frames = reader.getframerate(), reader.getnframes()
        return data, rate, frames / rate

    def models_root(self) -> Path:
        if not self.settings.admin:
            raise PermissionDeniedError("model loading is disabled on this server (it needs --admin)")
        if self.settings.models_dir is None:
            raise PermissionDeniedError(
                "model loading needs a models root: start the server with --models-dir"
            )
        return self.settings.models_dir.resolve()

    def admin_path(self, requested: str) -> Path:
        """A package directory below the models root; anything that could leave it is refused."""
        root = self.models_root()
        relative = PurePosixPath(requested)
        if (
            not requested
            or "\x00" in requested
            or relative.is_absolute()
            or ".." in relative.parts
            or "\\" in requested
        ):
            raise PermissionDeniedError(f"path {requested!r} must be a relative path below the models root")
        try:
            path = (root / relative).resolve()
            if not path.is_relative_to(root):
                raise PermissionDeniedError(f"path {requested!r} leaves the models root")
            found = path.is_dir()
        except OSError as exc:  # a name too long for the file system, say: found by fuzzing
            raise InvalidArgumentError(f"path {requested!r} cannot be opened: {exc.strerror}") from None
        if not found:
            raise InvalidArgumentError(f"path {requested!r} is not a package directory below the models root")
        return path

    async def load(self, requested_path: str, name: str) -> ModelEntry:
        path = self.admin_path(requested_path)
        key = name or path.name
        load = functools.partial(load_model, rename=bool(name))
        return await self.runner.call(load, self.registry, path, key, self.load_package, self.engines)

    def unload(self, name: str) -> bool:
        self.models_root()  # the same admin switch guards unloading
        self.registry.entry(name)
        return self.registry.remove(name)


def audio_input(pcm16: bytes, sample_rate: int, center_sample: int | None) -> AudioInput:
    """Validate an audio window from a request (PCM16 mono at 16 kHz, or 24 kHz as the seed's browser
    page captured it, resampled when rendered; at most 2 s)."""
    rate = sample_rate or SAMPLE_RATE
    if rate not in REQUEST_SAMPLE_RATES:
        raise InvalidArgumentError(
            f"audio sample_rate {rate} is not supported; send 16000 (or 24000) Hz PCM16 mono"
        )
    if not pcm16:
        raise InvalidArgumentError("audio window is empty")
    if len(pcm16) % 2:
        raise InvalidArgumentError(f"audio window has {len(pcm16)} bytes; PCM16 needs an even count")
    samples = len(pcm16) // 2
    if samples > MAX_AUDIO_WINDOW_S * rate:
        raise InvalidArgumentError(
            f"audio window of {samples} samples is longer than {MAX_AUDIO_WINDOW_S:g} s"
        )
    center = samples // 2 if center_sample is None else center_sample
    if not 0 <= center < samples:
        raise InvalidArgumentError(f"center_sample {center} is outside the window of {samples} samples")
    return AudioInput(np.frombuffer(pcm16, dtype="<i2").astype(np.int16, copy=False), rate, center)
