"""The seed's SyncTalk_2D package layout, loaded as it is (fixed file names, no manifest).

Only the full-body video is decoded here. The other videos and the UNet checkpoint are recorded in
`ModelPackage.model_files` for the unet328 engine, which opens them itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import PackageError
from lipsync_server.packages.crops import (
    boxes_from_landmarks,
    find_bad_box,
    landmark_files,
    parse_crop_rectangles,
)
from lipsync_server.packages.model import SYNCTALK_FORMAT, ArrayFrames, ModelPackage
from lipsync_server.packages.native import (
    check_name,
    check_wav,
    ensure_inside,
    is_dir,
    is_file,
    load_features,
    read_json,
    resolve_inside,
)
from lipsync_server.packages.video import decode_video, video_fps

logger = logging.getLogger(__name__)

PACKAGE_INFO = "package_info.json"
FEATURES = "aud_ave.npy"
FULL_BODY_VIDEO = "full_body_video.mp4"
# Video type (as GetVideoFrame names it) -> file, for the videos the unet328 engine reads itself.
ENGINE_VIDEOS = {
    "crops_328": "crops_328_video.mp4",
    "rois_320": "rois_320_video.mp4",
    "model_inputs": "model_inputs_video.mp4",
}
CROP_RECTANGLES = "cache/crop_rectangles.json"
LANDMARKS = "landmarks"
CHECKPOINT = "checkpoint/model_best.onnx"
# The layout names no audio encoder; this file beside the UNet (what `lipsync-server convert` writes) is used.
AUDIO_ENCODER = "checkpoint/audio_encoder.onnx"
UNET_ROLE, ENCODER_ROLE = "unet", "audio_encoder"
AUDIO = "aud.wav"
# Any of these marks a directory as a SyncTalk_2D package.
MARKERS = (PACKAGE_INFO, FULL_BODY_VIDEO, FEATURES)
ENGINE = "unet328"
FEATURE_COLUMNS = 512
# SyncTalk_2D resamples every video to 25 fps; used when neither package_info.json nor the video says.
DEFAULT_FPS = 25.0


def is_synctalk(root: Path) -> bool:
    """Whether directory `root` holds any of the files that mark a SyncTalk_2D package."""
    return any(is_file(root / marker) for marker in MARKERS)


@dataclass(frozen=True)
class PackageInfo:
    """What the loader reads from `package_info.json`; each field None when the file does not say."""

    name: str | None = None
    fps: float | None = None
    frame_count: int | None = None


def read_package_info(path: Path) -> PackageInfo:
    """The name, fps and frame count of a `package_info.json`.

    The reference writes `dataset_name` and `videos.full_body_img.{fps,frame_count}`; top-level `name`,
    `fps` and `frame_count` are read too, and win.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise PackageError(path, f"must be a JSON object, is {type(data).__name__}")
    videos = data.get("videos", {})
    full_body = videos.get("full_body_img", {}) if isinstance(videos, dict) else {}
    if not isinstance(full_body, dict):
        full_body = {}

    name = data.get("name", data.get("dataset_name"))
    if name is not None and not isinstance(name, str):
        raise PackageError(path, f"'name' must be a string, got {name!r}")
    fps = data.get("fps", full_body.get("fps"))
    if fps is not None and (
        not isinstance(fps, int | float) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0
    ):
        raise PackageError(path, f"'fps' must be a positive number, got {fps!r}")
    frame_count = data.get("frame_count", full_body.get("frame_count"))
    if frame_count is not None and (type(frame_count) is not int or frame_count < 1):
        raise PackageError(path, f"'frame_count' must be a positive integer, got {frame_count!r}")
    return PackageInfo(name=name, fps=None if fps is None else float(fps), frame_count=frame_count)


def load_synctalk(root: Path, *, name: str | None = None) -> ModelPackage:
    """Load the SyncTalk_2D package in the resolved directory `root`.

    Its name is `name`, else package_info.json's, else the directory's. Frame counts of the video, the
    boxes and aud_ave.npy may differ by up to one second of frames (real packages do, by a frame or
    two): the package keeps the smallest count and a warning says so. A larger gap is refused.
    """
    info_path = _inside(root, PACKAGE_INFO)
    info = read_package_info(info_path) if is_file(info_path) else PackageInfo()
    if name is not None:
        package_name = check_name(name, root, "requested name")
    elif info.name is not None:
        package_name = check_name(info.name, info_path)
    else:
        package_name = check_name(root.name, root, "directory name")

    boxes = _read_boxes(root)
    features_path = _inside(root, FEATURES)
    features = load_features(features_path, columns=FEATURE_COLUMNS) if is_file(features_path) else None
    audio_path = _read_audio(root, has_features=features is not None)

    video_path = _inside(root, FULL_BODY_VIDEO)
    if not is_file(video_path):
        raise PackageError(video_path, "file is missing (the base frames of a SyncTalk_2D package)")
    model_files = {role: path for role, file in ENGINE_VIDEOS.items() if is_file(path := _inside(root, file))}
    for role, file in ((UNET_ROLE, CHECKPOINT), (ENCODER_ROLE, AUDIO_ENCODER)):
        if is_file(path := _inside(root, file)):
            model_files[role] = path

    pixels = decode_video(video_path)
    fps = info.fps or video_fps(video_path) or DEFAULT_FPS
    if info.frame_count is not None and info.frame_count != len(pixels):
        logger.warning(
            "%s: says %d frames but %s has %d", info_path, info.frame_count, FULL_BODY_VIDEO, len(pixels)
        )
    counts = {video_path: len(pixels), boxes.source: len(boxes.boxes)}
    if features is not None:
        counts[features_path] = len(features)
    count = _usable_count(counts, video_path, fps)
    boxes.check_inside(count, width=pixels.shape[2], height=pixels.shape[1])

    return ModelPackage(
        name=package_name,
        engine=ENGINE,
        format=SYNCTALK_FORMAT,
        root=root,
        fps=fps,
        frames=ArrayFrames(pixels[:count]),
        boxes=boxes.boxes[:count],
        audio_features=None if features is None else features[:count],
        audio_path=audio_path,
        videos=("full_body", *(role for role in ENGINE_VIDEOS if role in model_files)),
        model_files=model_files,
    )


def _inside(root: Path, relative: str) -> Path:
    return resolve_inside(root, relative, root / relative, "file")


@dataclass(frozen=True)
class _Boxes:
    """A package's crop boxes and where they came from, to name the right file in errors."""

    boxes: NDArray[np.int32]
    source: Path
    # One .lms file per box when the boxes come from landmarks.
    landmark_files: tuple[Path, ...] = ()

    def check_inside(self, count: int, *, width: int, height: int) -> None:
        found = find_bad_box(self.boxes[:count], width, height)
        if found is not None:
            index, problem = found
            if self.landmark_files:
                raise PackageError(self.landmark_files[index], f"gives box {problem}")
            raise PackageError(self.source, f"box {index} {problem}")


def _read_boxes(root: Path) -> _Boxes:
    """The crop boxes: from crop_rectangles.json when present, else computed from the landmarks."""
    rectangles = _inside(root, CROP_RECTANGLES)
    if is_file(rectangles):
        return _Boxes(parse_crop_rectangles(read_json(rectangles), rectangles), rectangles)
    directory = _inside(root, LANDMARKS)
    if not is_dir(directory):
        raise PackageError(root, f"has no crop boxes: neither {CROP_RECTANGLES} nor {LANDMARKS}/*.lms")
    files = landmark_files(directory)
    for file in files:
        ensure_inside(root, file, file, "file")
    return _Boxes(boxes_from_landmarks(files), directory, tuple(files))


def _read_audio(root: Path, *, has_features: bool) -> Path | None:
    """aud.wav when present and PCM16 mono 16 kHz.

    The reference extracts it with ffmpeg keeping the source's channels, so a stereo aud.wav is common;
    when aud_ave.npy carries the features anyway, such a file is skipped with a warning, not refused.
    """
    path = _inside(root, AUDIO)
    if not is_file(path):
        return None
    try:
        check_wav(path)
    except PackageError as exc:
        if not has_features:
            raise
        logger.warning("%s; using the features of %s without audio", exc, FEATURES)
        return None
    return path


def _usable_count(counts: dict[Path, int], video: Path, fps: float) -> int:
    """The smallest of `counts` (frames per file), refused when they differ by more than a second."""
    lowest, highest = min(counts.values()), max(counts.values())
    listed = ", ".join(f"{path.name} {count}" for path, count in counts.items())
    tolerance = max(1, round(fps))
    if highest - lowest > tolerance:
        # Name the odd one out: of three counts the middle one is the majority's; of two, trust the video.
        reference = sorted(counts.values())[1] if len(counts) == 3 else counts[video]
        outlier = max(counts, key=lambda path: abs(counts[path] - reference))
        raise PackageError(
            outlier, f"frame counts differ by more than one second ({tolerance} frames): {listed}"
        )
    if highest != lowest:
        logger.warning(
            "%s: frame counts differ (%s); using the first %d frames", video.parent, listed, lowest
        )
    return lowest
