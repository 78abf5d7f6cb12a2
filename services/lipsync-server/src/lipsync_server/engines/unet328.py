"""The `unet328` engine: SyncTalk_2D's UNet-328 on ONNX Runtime, with the reference's input and compositing.

Per frame, as the SyncTalk_2D reference's inference does it:

1. The face box of the base frame is resized to 328×328 (bicubic); its centre [4:324, 4:324] is the
   real ROI, 320×320, and a copy with the rectangle x 5…314, y 5…309 blacked out is the masked ROI.
2. The model reads both as BGR / 255, real first: [6, 320, 320] float32; and the frame's audio tensor
   [32, 16, 16], its 16 rows of AVE features around the frame (`lipsync_server.ave`).
3. Its output ×255, truncated to uint8, replaces the centre of the 328 crop, which is resized back to the
   box (bicubic): that is the face region the renderer pastes into the frame.

Frames of one call run as one batch. Features for a frame come from the package's own (`aud_ave.npy`
or `features`; computed from its audio at load when it has only audio), or, for requests with audio,
from the request's audio window through the AVE audio encoder.

Model files: `unet`, the UNet-328 ONNX model (SyncTalk_2D layout: `checkpoint/model_best.onnx`), and
optionally `audio_encoder`, the AVE encoder ONNX model (SyncTalk_2D layout:
`checkpoint/audio_encoder.onnx`), without which the model can only be driven by its own features.
Input and output names are read from the models (the reference uses `input`/`audio` → `output`, older
exports `visual_input`/`audio_input`).

`--device`: `cuda` runs on ONNX Runtime's CUDA provider (refused when it is not installed), `cpu` on
the CPU, `auto` on CUDA when available, else CPU.

`--precision`: `auto` runs a model's half-precision copy (`name.fp16.onnx` beside it, written by
`lipsync-server convert --fp16`; see half_precision) on CUDA when the package has one, and the float32
model otherwise and always on the CPU, whose ONNX Runtime provider computes float16 models in float32
anyway; `fp32` never the copy; `fp16` always, refusing a package without one.

On CUDA every model with a dynamic batch axis runs through `ShapeStableSession`: ONNX Runtime's CUDA
convolutions (the cuDNN frontend, since ONNX Runtime 1.20) rebuild their execution plans whenever a
call's input shape differs from the previous call's (microsoft/onnxruntime#23006), which on an NVIDIA
H200 cost about 2 s per call for UNet-328 and 0.14 s for the AVE encoder, and micro-batches differ in
size all the time. So each power-of-two batch size gets a session of its own that only ever sees that
shape, and a batch is padded up to the next power of two (at most twice the frames; on that GPU a batch
of 8 costs 1.6 times a batch of 4, docs/performance.md). `warm_up` builds the plans of batches up to
`WARM_BATCH`.

On CUDA, a UNet with a dynamic batch axis also gets page-locked host buffers per bucket, bound to its
sessions with I/O binding (engines/staging.py): the frames' inputs are written straight into them and
the copies to and from the GPU skip the driver's staging copy. Should binding fail on a machine (it is
tried once at load), the engine logs why and copies from ordinary memory instead.

Per-frame work (the crop and model input, the face region) goes through the `map_frames` the
renderer gives, so the server spreads a batch's frames over its threads.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from lipsync_server.audio import read_wav
from lipsync_server.ave import (
    AUDIO_SHAPE,
    ENCODER_BATCH,
    FEATURES,
    AudioEncoder,
    AveStream,
    frame_audio,
    package_features,
    window_audio,
)
from lipsync_server.engines.base import FrameJob, FrameMap, serial_map
from lipsync_server.engines.staging import PAGE_LOCKED, Allocate, BoundStaging, HostStaging, Staging
from lipsync_server.errors import InvalidArgumentError, PackageError
from lipsync_server.half_precision import half_precision_path
from lipsync_server.mel import MIN_SAMPLES, N_MELS, SAMPLE_RATE, VIDEO_FPS, WINDOW_FRAMES, pcm16_to_float
from lipsync_server.packages.model import ModelPackage
from lipsync_server.packages.synctalk import AUDIO_ENCODER

logger = logging.getLogger(__name__)

UNET_ROLE = "unet"
ENCODER_ROLE = "audio_encoder"
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")
CROP_SIDE = 328
ROI_SIDE = 320
ROI_OFFSET = 4
IMAGE_CHANNELS = 6
# The reference masks the ROI with cv2.rectangle(roi, (5, 5, 310, 305), black, filled): x 5…314, y 5…309.
MASK_ROWS = slice(5, 5 + 305)
MASK_COLUMNS = slice(5, 5 + 310)
_ROI = slice(ROI_OFFSET, ROI_OFFSET + ROI_SIDE)
_IMAGE_NAMES = ("input", "visual_input")
_AUDIO_NAMES = ("audio", "audio_input")
_CUDA = "CUDAExecutionProvider"
# (model file, execution providers) -> an ONNX Runtime session of it (tests pass doubles).
OpenModel = Callable[[Path, Sequence[str]], Any]
_CPU = "CPUExecutionProvider"
# Batch sizes whose CUDA plans `warm_up` builds before the first request: up to the server's default
# --max-batch. A larger batch builds its plans on first use, once.
WARM_BATCH = 8


def _onnxruntime() -> Any:
    import onnxruntime

    return onnxruntime


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for `--device`; ValueError when `cuda` is asked for and missing."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    available = _onnxruntime().get_available_providers()
    if device == "cuda" and _CUDA not in available:
        raise ValueError(
            "--device cuda, but this ONNX Runtime has no CUDA provider (install onnxruntime-gpu and CUDA)"
        )
    if device != "cpu" and _CUDA in available:
        return [_CUDA, _CPU]
    return [_CPU]


def open_session(path: Path, providers: Sequence[str]) -> Any:
    """An ONNX Runtime session of model file `path`; PackageError naming it when it does not load."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Warnings (e.g. about nodes left on the CPU) would repeat per model; errors still show.
    options.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning: the same cores composite and encode JPEGs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:
        raise PackageError(path, f"is not an ONNX model ONNX Runtime can run: {exc}") from exc
    if providers[0] == _CUDA and session.get_providers()[0] != _CUDA:
        raise PackageError(path, "could not be placed on the GPU (the CUDA provider failed to start)")
    return session


class ShapeStableSession:
    """An ONNX Runtime session-alike for a model with a dynamic batch axis that never shows a session
    two batch sizes: a call of batch N runs on the session of bucket 2^ceil(log2 N), its inputs padded
    with zeros to the bucket and its outputs cut back to N (the frames of a batch are independent).
    Sessions are opened on first use of their bucket, the first one given is the first bucket's."""

    def __init__(self, first: Any, open_another: Callable[[], Any]) -> None:
        self._spare: Any | None = first
        self._first = first
        self._open = open_another
        self._lock = threading.Lock()
        self._sessions: dict[int, Any] = {}

    @staticmethod
    def bucket(batch: int) -> int:
        return 1 << max(0, batch - 1).bit_length()

    def get_inputs(self) -> Any:
        return self._first.get_inputs()

    def get_outputs(self) -> Any:
        return self._first.get_outputs()

    def get_providers(self) -> Any:
        return self._first.get_providers()

    @property
    def buckets(self) -> list[int]:
        """The batch sizes that have a session, ascending."""
        with self._lock:
            return sorted(self._sessions)

    def run(self, names: Any, feeds: dict[str, NDArray[Any]]) -> list[Any]:
        batch = next(iter(feeds.values())).shape[0]
        bucket = self.bucket(batch)
        if bucket != batch:
            feeds = {name: _padded(array, bucket) for name, array in feeds.items()}
        outputs = self.session_for(bucket).run(names, feeds)
        return [output[:batch] for output in outputs]

    def session_for(self, bucket: int) -> Any:
        """The session of batch size `bucket` (a power of two), opened on first use."""
        # The lock keeps two threads from opening a session for the same bucket; opening one is rare (once
        # per bucket), so holding it meanwhile costs nothing in steady state.
        with self._lock:
            session = self._sessions.get(bucket)
            if session is None:
                session = self._spare if self._spare is not None else self._open()
                self._spare = None
                self._sessions[bucket] = session
            return session


def _powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, … up to `limit`."""
    return [1 << k for k in range(limit.bit_length())]


def _padded(array: NDArray[Any], batch: int) -> NDArray[Any]:
    """`array` with zero rows added along axis 0 up to `batch` rows."""
    out = np.zeros((batch, *array.shape[1:]), dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


def shape_stable(session: Any, open_another: Callable[[], Any]) -> Any:
    """`session` itself, or on CUDA with a dynamic batch axis a `ShapeStableSession` starting with it."""
    batch = session.get_inputs()[0].shape[0]
    if session.get_providers()[0] != _CUDA or isinstance(batch, int):
        return session
    return ShapeStableSession(session, open_another)


@dataclass(frozen=True)
class UnetModel:
    """A UNet-328 ONNX session and the names of its image input, audio input and output."""

    session: Any
    image_input: str
    audio_input: str
    output: str
    # The batch size the model was exported with, or None for a dynamic batch axis.
    fixed_batch: int | None

    @classmethod
    def of(cls, session: Any, path: Path) -> UnetModel:
        """The model of ONNX Runtime session `session` of file `path`, its inputs checked."""
        inputs = {arg.name: list(arg.shape) for arg in session.get_inputs()}
        outputs = session.get_outputs()
        if len(inputs) != 2 or len(outputs) != 1:
            raise PackageError(
                path, f"has {len(inputs)} inputs and {len(outputs)} outputs; UNet-328 has 2 and 1"
            )
        image = _find_input(inputs, IMAGE_CHANNELS, _IMAGE_NAMES)
        audio = _find_input(inputs, AUDIO_SHAPE[0], _AUDIO_NAMES)
        if image is None or audio is None or image == audio:
            raise PackageError(
                path, f"inputs {inputs} are not UNet-328's image [N,6,320,320] and audio [N,32,16,16]"
            )
        for name, expected in ((image, [IMAGE_CHANNELS, ROI_SIDE, ROI_SIDE]), (audio, list(AUDIO_SHAPE))):
            shape = inputs[name]
            fixed = [(d, e) for d, e in zip(shape[1:], expected, strict=False) if isinstance(d, int)]
            if len(shape) != 4 or any(d != e for d, e in fixed):
                raise PackageError(path, f"input {name!r} has shape {shape}; UNet-328 reads [N, {expected}]")
        batch = inputs[image][0]
        return cls(session, image, audio, outputs[0].name, batch if isinstance(batch, int) else None)

    def run(self, images: NDArray[np.float32], audio: NDArray[np.float32]) -> NDArray[np.float32]:
        """[B, 3, 320, 320] in (0, 1) for images [B, 6, 320, 320] and audio [B, 32, 16, 16]."""
        step = self.fixed_batch or images.shape[0]
        parts = []
        for start in range(0, images.shape[0], step):
            (out,) = self.session.run(
                [self.output],
                {
                    self.image_input: images[start : start + step],
                    self.audio_input: audio[start : start + step],
                },
            )
            parts.append(np.asarray(out, dtype=np.float32))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _audio_tensor(package: ModelPackage, job: FrameJob) -> NDArray[np.float32]:
    """The audio tensor [32, 16, 16] of `job`: its own features, else the package's for its frame."""
    if job.features is not None:
        if job.features.shape != AUDIO_SHAPE:
            raise InvalidArgumentError(
                f"unet328 features must be an audio tensor {list(AUDIO_SHAPE)}, "
                f"got shape {list(job.features.shape)}"
            )
        return job.features
    if package.audio_features is not None:
        return frame_audio(package.audio_features, job.frame_id)
    raise InvalidArgumentError(f"model {package.name!r} has no audio features; send audio")


def _find_input(inputs: dict[str, list[Any]], channels: int, names: Sequence[str]) -> str | None:
    """The input with `channels` channels, else the one with one of the reference's `names`."""
    for name, shape in inputs.items():
        if len(shape) == 4 and shape[1] == channels:
            return name
    return next((name for name in names if name in inputs), None)


def face_crop(frame: NDArray[np.uint8], box: NDArray[np.int32]) -> NDArray[np.uint8]:
    """The face box of `frame` resized to 328×328, bicubic, as the reference crops it."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = cv2.resize(frame[y1:y2, x1:x2], (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_CUBIC)
    return np.asarray(crop, dtype=np.uint8)


def fill_model_input(crop: NDArray[np.uint8], out: NDArray[np.float32]) -> None:
    """Write the model's image input [6, 320, 320] for a 328 crop into `out`: the real ROI / 255, then the
    masked ROI / 255, channels BGR."""
    np.divide(crop[_ROI, _ROI].transpose(2, 0, 1), np.float32(255.0), out=out[:3], dtype=np.float32)
    out[3:] = out[:3]
    out[3:, MASK_ROWS, MASK_COLUMNS] = 0.0


def face_region(
    crop: NDArray[np.uint8], prediction: NDArray[np.float32], width: int, height: int
) -> NDArray[np.uint8]:
    """The 328 crop with the prediction [3, 320, 320] in its centre, resized back to the width×height box."""
    composed = crop.copy()
    # ×255 then truncation to uint8, as the reference converts the model's output.
    composed[_ROI, _ROI] = (prediction.transpose(1, 2, 0) * np.float32(255.0)).astype(np.uint8)
    region = cv2.resize(composed, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.asarray(region, dtype=np.uint8)


def staging_for(unet: UnetModel, allocate: Allocate) -> Staging:
    """Bound host buffers from `allocate` for a UNet whose sessions are per bucket (CUDA, dynamic
    batch axis: a ShapeStableSession), plain numpy arrays for any other."""
    session = unet.session
    if not isinstance(session, ShapeStableSession):
        return HostStaging(unet.run)
    names = (unet.image_input, unet.audio_input, unet.output)
    return BoundStaging(session.session_for, ShapeStableSession.bucket, names, allocate)


def checked_staging(unet: UnetModel, allocate: Allocate, path: Path) -> Staging:
    """`staging_for(unet, allocate)` once a batch of one has run through it; HostStaging, with the
    reason logged, when bound buffers cannot be had or bound here."""
    staging = staging_for(unet, allocate)
    if isinstance(staging, HostStaging):
        return staging
    try:
        with staging.batch(1) as batch:
            batch.images[:] = 0.0
            batch.audio[:] = 0.0
            batch.run()
    except Exception as exc:
        logger.warning("%s: page-locked I/O binding failed (%s); copying from pageable memory", path, exc)
        return HostStaging(unet.run)
    return staging


@dataclass(frozen=True)
class _Runtime:
    """The sessions of one prepared package."""

    unet: UnetModel
    encoder: AudioEncoder | None
    staging: Staging
    # The encoder's session (a ShapeStableSession on CUDA), for warm_up.
    encoder_session: Any = None


class Unet328Engine:
    """SyncTalk_2D's UNet-328 on ONNX Runtime (see the module docstring)."""

    name = "unet328"
    # A batch is one model call, so frames of concurrent requests are worth a short wait (batching.py).
    batches_frames = True

    def __init__(
        self,
        device: str = "auto",
        *,
        precision: str = "auto",
        open_model: OpenModel = open_session,
        providers: Callable[[str], list[str]] = providers_for,
        host_buffers: Allocate = PAGE_LOCKED,
    ) -> None:
        if device not in DEVICES:
            raise ValueError(f"device {device!r} is not one of {', '.join(DEVICES)}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self._device = device
        self._precision = precision
        self._open = open_model
        self._providers = providers
        self._host_buffers = host_buffers
        self._lock = threading.Lock()
        # Sessions of prepared packages; weak so an unloaded package frees them.
        self._runtimes: weakref.WeakKeyDictionary[ModelPackage, _Runtime] = weakref.WeakKeyDictionary()

    def prepare(self, package: ModelPackage) -> ModelPackage:
        """Open the package's models and check its features; compute them from its audio when it has
        only audio, or from silence when it has neither (the mouth then stays closed)."""
        if abs(package.fps - VIDEO_FPS) > 0.01:
            raise PackageError(
                package.root,
                f"runs at {package.fps:g} fps; the unet328 engine's audio features are made for "
                f"{VIDEO_FPS} fps video (SyncTalk_2D resamples every video to {VIDEO_FPS} fps)",
            )
        runtime = self._load(package)
        features = package.audio_features
        if features is not None:
            if features.ndim != 2 or features.shape[1] != FEATURES:
                raise PackageError(
                    package.root,
                    f"audio features have shape {list(features.shape)}; the unet328 engine needs "
                    f"[frames, {FEATURES}] AVE features",
                )
        elif package.audio_path is not None:
            encoder = self._require_encoder(runtime, package, package.audio_path)
            try:
                pcm, _rate = read_wav(package.audio_path)
            except (InvalidArgumentError, OSError) as exc:
                raise PackageError(package.audio_path, str(exc)) from exc
            features = package_features(encoder, pcm16_to_float(pcm))
            logger.info(
                "%s: %d AVE feature rows computed from %s",
                package.name,
                len(features),
                package.audio_path.name,
            )
        else:
            encoder = self._require_encoder(runtime, package, package.root)
            silence = package_features(encoder, np.zeros(MIN_SAMPLES, dtype=np.float32))[:1]
            features = np.repeat(silence, package.frame_count, axis=0)
            logger.info("%s: no audio or features; the mouth follows silence", package.name)
        prepared = package
        if features is not package.audio_features:
            prepared = dataclasses.replace(package, audio_features=features)
        with self._lock:
            self._runtimes[prepared] = runtime
        return prepared

    def warm_up(self, package: ModelPackage) -> None:
        """Render frame 0 once (the first run of a session allocates and tunes its kernels); on CUDA,
        batches of every bucket up to WARM_BATCH, and the encoder at each of its buckets, each of which
        has a session and convolution plans of its own (ShapeStableSession)."""
        runtime = self._runtime(package)
        stable = isinstance(runtime.unet.session, ShapeStableSession)
        for size in _powers_of_two(WARM_BATCH if stable else 1):
            self.infer(package, [FrameJob(i % package.frame_count) for i in range(size)])
        if runtime.encoder is not None and isinstance(runtime.encoder_session, ShapeStableSession):
            for size in _powers_of_two(ENCODER_BATCH):
                runtime.encoder(np.zeros((size, N_MELS, WINDOW_FRAMES), np.float32))

    def features_from_audio(
        self, package: ModelPackage, pcm: NDArray[np.int16], sample_rate: int, center_sample: int
    ) -> NDArray[np.float32]:
        """The audio tensor [32, 16, 16] of the frame whose instant is `center_sample` of `pcm` (16 kHz)."""
        encoder = self._encoder(package)
        if sample_rate != SAMPLE_RATE:
            raise InvalidArgumentError(
                f"audio sample rate {sample_rate} Hz; the unet328 engine reads {SAMPLE_RATE}"
            )
        return window_audio(encoder, pcm16_to_float(pcm), center_sample)

    def device(self, package: ModelPackage) -> str:
        """ "cuda" when ONNX Runtime runs the package's UNet on its CUDA provider, else "cpu"."""
        return "cuda" if self._runtime(package).unet.session.get_providers()[0] == _CUDA else "cpu"

    def speech_stream(self, package: ModelPackage) -> AveStream:
        """Audio tensors of frames 0, 1, … of audio arriving in pieces (a Speak session); it takes
        float samples, `mel.pcm16_to_float` of the PCM16 chunks."""
        return AveStream(self._encoder(package))

    def infer(
        self, package: ModelPackage, jobs: Sequence[FrameJob], map_frames: FrameMap = serial_map
    ) -> list[NDArray[np.uint8]]:
        """The lip-synced face region of each job's frame, box-sized, from one batch of the UNet; each
        frame's input and face region through `map_frames`."""
        runtime = self._runtime(package)
        with runtime.staging.batch(len(jobs)) as batch:

            def assemble(item: tuple[int, FrameJob]) -> NDArray[np.uint8]:
                index, job = item
                crop = face_crop(package.frames.frame(job.frame_id), package.boxes[job.frame_id])
                fill_model_input(crop, batch.images[index])
                batch.audio[index] = _audio_tensor(package, job)
                return crop

            crops = map_frames(assemble, list(enumerate(jobs)))
            predictions = batch.run()

            def compose(item: tuple[FrameJob, NDArray[np.uint8], NDArray[np.float32]]) -> NDArray[np.uint8]:
                job, crop, prediction = item
                x1, y1, x2, y2 = (int(v) for v in package.boxes[job.frame_id])
                return face_region(crop, prediction, x2 - x1, y2 - y1)

            # Inside the batch: the predictions may be views of its buffers.
            return map_frames(compose, list(zip(jobs, crops, predictions, strict=True)))

    def _load(self, package: ModelPackage) -> _Runtime:
        unet_path = package.model_files.get(UNET_ROLE)
        if unet_path is None:
            raise PackageError(
                package.root,
                f"has no UNet model: name it as models.{UNET_ROLE} in manifest.json "
                "(checkpoint/model_best.onnx in a SyncTalk_2D package)",
            )
        try:
            providers = self._providers(self._device)
        except ValueError as exc:
            raise PackageError(unet_path, str(exc)) from exc
        unet_path = self._model_file(unet_path, providers)
        unet = UnetModel.of(self._open_stable(unet_path, providers), unet_path)
        encoder = encoder_session = None
        encoder_path = self._encoder_path(package)
        if encoder_path is not None:
            encoder_path = self._model_file(encoder_path, providers)
            try:
                encoder_session = self._open_stable(encoder_path, providers)
                encoder = AudioEncoder(encoder_session, encoder_path)
            except ValueError as exc:
                raise PackageError(encoder_path, str(exc)) from exc
        staging = checked_staging(unet, self._host_buffers, unet_path)
        logger.info(
            "%s: UNet-328 %s on %s%s",
            package.name,
            unet_path.name,
            unet.session.get_providers()[0],
            "" if encoder is None or encoder_path is None else f", AVE audio encoder {encoder_path.name}",
        )
        return _Runtime(unet, encoder, staging, encoder_session)

    def _model_file(self, path: Path, providers: Sequence[str]) -> Path:
        """The file of model `path` to run under `--precision` (see the module docstring)."""
        if self._precision == "fp32":
            return path
        half = half_precision_path(path)
        if self._precision == "fp16":
            if not half.is_file():
                raise PackageError(
                    half, f"is missing: --precision fp16 runs it (lipsync-server convert {path.name} --fp16)"
                )
            return half
        return half if providers[0] == _CUDA and half.is_file() else path

    def _open_stable(self, path: Path, providers: Sequence[str]) -> Any:
        return shape_stable(self._open(path, providers), lambda: self._open(path, providers))

    @staticmethod
    def _encoder_path(package: ModelPackage) -> Path | None:
        return package.model_files.get(ENCODER_ROLE)

    def _runtime(self, package: ModelPackage) -> _Runtime:
        with self._lock:
            runtime = self._runtimes.get(package)
        if runtime is None:
            runtime = self._load(package)
            with self._lock:
                runtime = self._runtimes.setdefault(package, runtime)
        return runtime

    def _encoder(self, package: ModelPackage) -> AudioEncoder:
        encoder = self._runtime(package).encoder
        if encoder is None:
            raise InvalidArgumentError(
                f"model {package.name!r} has no audio encoder ({ENCODER_ROLE} model file), so it can only "
                "be driven by its own audio features, not by audio in a request"
            )
        return encoder

    @staticmethod
    def _require_encoder(runtime: _Runtime, package: ModelPackage, source: Path) -> AudioEncoder:
        if runtime.encoder is None:
            raise PackageError(
                source,
                "the unet328 engine needs AVE features (features / aud_ave.npy) or an audio encoder "
                f"(models.{ENCODER_ROLE}, or {AUDIO_ENCODER} in a SyncTalk_2D package) to make them",
            )
        return runtime.encoder
