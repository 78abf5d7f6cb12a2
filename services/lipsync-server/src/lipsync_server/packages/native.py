"""The native `lipsync-package/1` format, and the file rules both package layouts share.

A native package is a directory with a `manifest.json` naming its frames, crop boxes, optional audio,
features and model files (see docs/model-package.md). Every file a package names must stay inside the
package directory, whether it is named by a manifest or by the SyncTalk_2D layout's fixed names.
"""

from __future__ import annotations

import json
import logging
import math
import re
import wave
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import PackageError, UnsupportedEngineError
from lipsync_server.packages.crops import check_boxes_inside, parse_box_list
from lipsync_server.packages.model import NATIVE_FORMAT, ArrayFrames, ModelPackage
from lipsync_server.packages.video import decode_images, decode_video, list_images

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Engines a package may name. Whether this server can run one is the engine registry's business.
ENGINES = ("sprite", "unet328")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
AUDIO_SAMPLE_RATE = 16000
# Bounds that no real package nears (four days of frames; FFmpeg's own size limit), so that a wild
# manifest value fails as a clear error rather than as arithmetic overflow later.
MAX_FRAME_COUNT = 10_000_000
MAX_FRAME_SIDE = 65_536
# Base frames of a native package are the full-body frames; there are no other videos.
NATIVE_VIDEOS = ("full_body",)
_KNOWN_KEYS = frozenset(
    {"format", "name", "engine", "fps", "frame_count", "width", "height"}
    | {"frames", "boxes", "audio", "features", "models"}
    | set(ENGINES)
)


def check_name(name: object, path: Path, what: str = "name") -> str:
    """`name` if it is a safe model name (`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`); PackageError otherwise."""
    if not isinstance(name, str) or SAFE_NAME.fullmatch(name) is None:
        raise PackageError(
            path,
            f"{what} {name!r} is not a safe model name "
            "(1-64 characters: letters, digits, '.', '_', '-', starting with a letter or digit)",
        )
    return name


def resolve_inside(root: Path, relative: object, source: Path, field: str) -> Path:
    """`root / relative`, refused unless it is a relative name that stays inside `root`.

    `root` must already be resolved. `source` and `field` say where the name came from, for the error.
    Absolute names, `..`, and symlinks whose target lies outside the package are all refused.
    """
    if not isinstance(relative, str) or not relative:
        raise PackageError(source, f"{field} must be a non-empty relative file name, got {relative!r}")
    if "\x00" in relative:
        raise PackageError(source, f"{field} {relative!r} contains a NUL character")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise PackageError(source, f"{field} {relative!r} must be relative to the package directory")
    if ".." in posix.parts or ".." in windows.parts:
        raise PackageError(source, f"{field} {relative!r} must not contain '..'")
    path = root / relative
    ensure_inside(root, path, source, field)
    return path


def ensure_inside(root: Path, path: Path, source: Path, field: str) -> None:
    """Refuse `path` when, symlinks followed, it lies outside the (resolved) package `root`."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise PackageError(source, f"{field} {path.name!r} cannot be resolved: {exc}") from exc
    if not real.is_relative_to(root):
        raise PackageError(source, f"{field} {path.name!r} leads outside the package directory")


def is_file(path: Path) -> bool:
    """Path.is_file that answers False, rather than raising, for names the OS refuses."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    """Path.is_dir that answers False, rather than raising, for names the OS refuses."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def read_json(path: Path) -> object:
    """The parsed content of JSON file `path`; PackageError when it is missing or not valid JSON."""
    if not is_file(path):
        raise PackageError(path, "file is missing")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise PackageError(path, f"cannot be read: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PackageError(path, f"is not valid JSON: {exc}") from exc


def load_features(path: Path, *, columns: int | None = None) -> NDArray[np.float32]:
    """A float32 `[rows, F]` feature matrix from `.npy` file `path` (F == `columns` when given).

    The header is checked before the data is read, so a file claiming a huge shape costs nothing.
    """
    if not is_file(path):
        raise PackageError(path, "file is missing")
    try:
        # mmap: np.load only maps the file, and refuses a shape larger than the file itself.
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise PackageError(path, f"is not a .npy array file: {exc}") from exc
    if not isinstance(mapped, np.ndarray):
        raise PackageError(path, "is an .npz archive; a single .npy array is needed")
    if mapped.dtype != np.float32:
        raise PackageError(path, f"must hold float32 values, holds {mapped.dtype}")
    if mapped.ndim != 2 or mapped.shape[0] < 1 or mapped.shape[1] < 1:
        raise PackageError(path, f"must be a 2-D [frames, features] array, has shape {list(mapped.shape)}")
    if columns is not None and mapped.shape[1] != columns:
        raise PackageError(path, f"must have {columns} columns, has shape {list(mapped.shape)}")
    features = np.array(mapped, dtype=np.float32)
    del mapped
    if not np.isfinite(features).all():
        raise PackageError(path, "contains NaN or infinite values")
    return features


def check_wav(path: Path) -> float:
    """The duration in seconds of `path`, which must be a PCM16 mono 16 kHz WAV file."""
    if not is_file(path):
        raise PackageError(path, "file is missing")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            samples = wav.getnframes()
    except (wave.Error, EOFError) as exc:
        raise PackageError(path, f"is not a PCM WAV file: {exc}") from exc
    except OSError as exc:
        raise PackageError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if (channels, width, rate) != (1, 2, AUDIO_SAMPLE_RATE):
        raise PackageError(
            path,
            f"must be PCM16 mono {AUDIO_SAMPLE_RATE} Hz; "
            f"is {8 * width}-bit, {channels} channel(s), {rate} Hz",
        )
    if samples == 0:
        raise PackageError(path, "holds no audio samples")
    return samples / AUDIO_SAMPLE_RATE


def load_native(root: Path, *, name: str | None = None) -> ModelPackage:
    """Load the native package in the resolved directory `root`, named `name` or as its manifest says.

    Cheap checks (manifest, boxes, features, audio, model files) run before the frames are decoded.
    """
    manifest_path = root / MANIFEST
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise PackageError(manifest_path, f"must be a JSON object, is {type(manifest).__name__}")
    reader = _ManifestReader(root, manifest_path, manifest)

    package_format = reader.required("format")
    if package_format != NATIVE_FORMAT:
        raise PackageError(
            manifest_path, f"unknown format {package_format!r}; this server reads {NATIVE_FORMAT!r}"
        )
    package_name = check_name(reader.required("name"), manifest_path)
    if name is not None:
        package_name = check_name(name, manifest_path, "requested name")
    engine = reader.required("engine")
    if not isinstance(engine, str) or engine not in ENGINES:
        raise UnsupportedEngineError(
            manifest_path, f"unknown engine {engine!r}; packages may name {', '.join(ENGINES)}"
        )
    fps = reader.fps()
    frame_count = reader.positive_int("frame_count", MAX_FRAME_COUNT)
    width, height = (
        reader.positive_int("width", MAX_FRAME_SIDE),
        reader.positive_int("height", MAX_FRAME_SIDE),
    )
    reader.warn_unknown_keys()

    boxes_path = reader.path("boxes")
    boxes = parse_box_list(read_json(boxes_path), boxes_path)
    if len(boxes) != frame_count:
        raise PackageError(
            boxes_path, f"has {len(boxes)} boxes; manifest.json says frame_count {frame_count}"
        )
    check_boxes_inside(boxes, width, height, boxes_path)

    features = None
    if "features" in manifest:
        features_path = reader.path("features")
        features = load_features(features_path)
        if features.shape[0] != frame_count:
            raise PackageError(
                features_path, f"has {features.shape[0]} rows; manifest.json says frame_count {frame_count}"
            )

    audio_path = None
    if "audio" in manifest:
        audio_path = reader.path("audio")
        duration = check_wav(audio_path)
        if abs(duration - frame_count / fps) > 1 / fps:
            logger.warning(
                "%s: audio lasts %.2f s but the %d frames last %.2f s",
                audio_path,
                duration,
                frame_count,
                frame_count / fps,
            )

    model_files = reader.models()
    engine_options = reader.engine_options(engine)

    pixels = _read_frames(root, reader.path("frames", must_exist=False), frame_count, width, height)
    return ModelPackage(
        name=package_name,
        engine=engine,
        format=NATIVE_FORMAT,
        root=root,
        fps=fps,
        frames=ArrayFrames(pixels),
        boxes=boxes,
        audio_features=features,
        audio_path=audio_path,
        videos=NATIVE_VIDEOS,
        model_files=model_files,
        engine_options=engine_options,
    )


def _read_frames(root: Path, path: Path, frame_count: int, width: int, height: int) -> NDArray[np.uint8]:
    """The `frame_count` width×height frames of the video file or image directory `path`."""
    if is_dir(path):
        images = list_images(path)
        if len(images) != frame_count:
            raise PackageError(
                path, f"has {len(images)} images; manifest.json says frame_count {frame_count}"
            )
        for image in images:
            ensure_inside(root, image, root / MANIFEST, "'frames' image")
        pixels = decode_images(images, path)
    elif is_file(path):
        # One frame more than expected is enough to tell that the video is too long.
        pixels = decode_video(path, limit=frame_count + 1)
        if len(pixels) != frame_count:
            found = f"more than {frame_count}" if len(pixels) > frame_count else str(len(pixels))
            raise PackageError(path, f"has {found} frames; manifest.json says frame_count {frame_count}")
    else:
        raise PackageError(path, "is missing (frames must be a video file or a directory of images)")
    if pixels.shape[1:3] != (height, width):
        raise PackageError(
            path, f"frames are {pixels.shape[2]}x{pixels.shape[1]}; manifest.json says {width}x{height}"
        )
    return pixels


class _ManifestReader:
    """Typed access to the fields of one parsed manifest, every failure a PackageError on it."""

    def __init__(self, root: Path, path: Path, manifest: dict[str, object]) -> None:
        self._root = root
        self._path = path
        self._manifest = manifest

    def required(self, key: str) -> object:
        if key not in self._manifest:
            raise PackageError(self._path, f"{key!r} is missing")
        return self._manifest[key]

    def positive_int(self, key: str, maximum: int) -> int:
        value = self.required(key)
        # bool is an int in Python, but `true` is no frame count.
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
            raise PackageError(self._path, f"{key!r} must be an integer from 1 to {maximum}, got {value!r}")
        return value

    def fps(self) -> float:
        value = self.required("fps")
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise PackageError(self._path, f"'fps' must be a positive number, got {value!r}")
        return float(value)

    def path(self, key: str, *, must_exist: bool = True) -> Path:
        path = resolve_inside(self._root, self.required(key), self._path, repr(key))
        if must_exist and not is_file(path):
            raise PackageError(path, f"file is missing (named by {key!r} in manifest.json)")
        return path

    def models(self) -> dict[str, Path]:
        models = self._manifest.get("models", {})
        if not isinstance(models, dict):
            raise PackageError(self._path, f"'models' must be an object of role -> file, got {models!r}")
        files: dict[str, Path] = {}
        for role, relative in models.items():
            check_name(role, self._path, "model role")
            path = resolve_inside(self._root, relative, self._path, f"models.{role}")
            if not is_file(path):
                raise PackageError(path, f"file is missing (model {role!r} in manifest.json)")
            files[role] = path
        return files

    def engine_options(self, engine: str) -> dict[str, object]:
        options = self._manifest.get(engine, {})
        if not isinstance(options, dict):
            raise PackageError(self._path, f"{engine!r} options must be an object, got {options!r}")
        return dict(options)

    def warn_unknown_keys(self) -> None:
        # Unknown keys are not errors (a newer writer may add some), but a typo should not pass silently.
        for key in sorted(set(self._manifest) - _KNOWN_KEYS):
            logger.warning("%s: ignoring unknown key %r", self._path, key)
