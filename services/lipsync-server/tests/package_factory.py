"""Writers of small synthetic model packages, in both layouts, for tests.

`write_native_package` writes a `lipsync-package/1` package and `write_synctalk_package` a SyncTalk_2D
one, each into a directory of its own. Both are deterministic and fast (the defaults, 12 frames of
160×120, write in milliseconds), and return a `SyntheticPackage` holding what was written, so a test can
compare a loaded package with the truth. Video frames go through lossy mp4v compression: compare them
with a tolerance (`frames_match`); PNG frames are exact.

The smaller writers (`write_video`, `write_wav`, `write_landmarks`, ...) and `update_manifest` let a test
break one thing in an otherwise valid package.
"""

from __future__ import annotations

import json
import math
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

FRAME_COUNT = 12
WIDTH = 160
HEIGHT = 120
FPS = 25
SAMPLE_RATE = 16000
LANDMARK_POINTS = 110
# Model files are recorded by the loader, never opened, so their content does not matter to it.
PLACEHOLDER_MODEL = b"placeholder model file: the package loader does not open model files\n"
SPRITE_OPTIONS: dict[str, object] = {"mouth_center": [0.5, 0.75], "mouth_width": 0.36}


@dataclass(frozen=True)
class SyntheticPackage:
    """A package written by this module, and the data it was written from."""

    root: Path
    frames: NDArray[np.uint8]
    boxes: NDArray[np.int32]
    features: NDArray[np.float32] | None
    fps: float
    audio: Path | None


def synthetic_frames(count: int, width: int, height: int) -> NDArray[np.uint8]:
    """`count` distinct BGR frames: a smooth gradient whose brightness steps from frame to frame.

    Smooth, so that mp4v keeps them close to the original; distinct, so that a test can tell frame i
    from frame i + 1 after compression (their mean levels differ by about 16).
    """
    x = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 40, height, dtype=np.float32)[:, None, None]
    channel = np.array([0, 20, 40], dtype=np.float32)[None, None, :]
    base = x + y + channel
    levels = [16 * (index % 9) + 20 for index in range(count)]
    return np.stack([(base + level).clip(0, 255).astype(np.uint8) for level in levels])


def synthetic_boxes(count: int, width: int, height: int) -> NDArray[np.int32]:
    """`count` square face boxes inside a width×height frame, drifting a little from frame to frame."""
    side = min(width, height) // 3
    boxes = []
    for index in range(count):
        x1 = (width - side) // 2 + (index % 5) - 2
        y1 = (height - side) // 3 + (index % 3) - 1
        boxes.append([x1, y1, x1 + side, y1 + side])
    return np.array(boxes, dtype=np.int32)


def synthetic_features(rows: int, columns: int, seed: int = 0) -> NDArray[np.float32]:
    """A deterministic float32 `[rows, columns]` feature matrix with values in [0, 1)."""
    return np.random.default_rng(seed).random((rows, columns), dtype=np.float32)


def frames_match(decoded: NDArray[np.uint8], written: NDArray[np.uint8], tolerance: float = 6.0) -> bool:
    """Whether each decoded frame is within `tolerance` mean absolute difference of the written one."""
    if decoded.shape != written.shape:
        return False
    difference = np.abs(decoded.astype(np.int16) - written.astype(np.int16))
    return bool((difference.reshape(len(written), -1).mean(axis=1) <= tolerance).all())


def write_video(path: Path, frames: NDArray[np.uint8], fps: float = FPS) -> None:
    """Write `frames` (N×H×W×3 BGR) to `path` as an mp4v video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def write_images(directory: Path, frames: NDArray[np.uint8], suffix: str = ".png") -> None:
    """Write `frames` as `directory/00000<suffix>`, `00001<suffix>`, ... (".png" or ".jpg")."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        if not cv2.imwrite(str(directory / f"{index:05d}{suffix}"), frame):
            raise RuntimeError(f"OpenCV cannot write {directory / f'{index:05d}{suffix}'}")


def write_wav(
    path: Path, seconds: float, *, sample_rate: int = SAMPLE_RATE, channels: int = 1, sample_width: int = 2
) -> None:
    """Write `seconds` of a 220 Hz tone pulsing 2.5 times a second (speech-like loudness changes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    signal = np.sin(2 * math.pi * 220 * t) * np.abs(np.sin(2 * math.pi * 1.25 * t))
    peak = 2 ** (8 * sample_width - 1) - 1
    samples = np.repeat((signal * 0.5 * peak).astype(f"<i{sample_width}")[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(sample_width)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.tobytes())


def landmarks_for_box(box: Iterable[int]) -> NDArray[np.float32]:
    """110 landmark points whose SyncTalk_2D crop is the square `box` [x1, y1, x2, y2].

    The crop reads x from points 1 and 31 and y from point 52, truncating toward zero, so those points
    carry fractions (.4, .7) to prove the truncation. The other points sit at the box centre.
    """
    x1, y1, x2, y2 = box
    if x2 - x1 != y2 - y1:
        raise ValueError(f"a SyncTalk_2D crop is square; {[x1, y1, x2, y2]} is not")
    points = np.full((LANDMARK_POINTS, 2), [(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float32)
    points[1] = (x1 + 0.4, (y1 + y2) / 2)
    points[31] = (x2 + 0.7, (y1 + y2) / 2)
    points[52] = ((x1 + x2) / 2, y1 + 0.4)
    return points


def write_landmarks(directory: Path, boxes: NDArray[np.int32]) -> None:
    """Write `directory/<i>.lms` for each box i, as the SyncTalk_2D preprocessing names them."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, box in enumerate(boxes):
        lines = [f"{x:.3f} {y:.3f}" for x, y in landmarks_for_box(int(value) for value in box)]
        (directory / f"{index}.lms").write_text("\n".join(lines) + "\n")


def write_json(path: Path, data: object) -> None:
    """Write `data` as JSON to `path`, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def read_manifest(root: Path) -> dict[str, object]:
    """The parsed `manifest.json` of native package `root`."""
    manifest: dict[str, object] = json.loads((root / "manifest.json").read_text())
    return manifest


def update_manifest(
    root: Path, changes: Mapping[str, object] | None = None, *, remove: Iterable[str] = ()
) -> None:
    """Rewrite the manifest of native package `root` with `changes` applied and the keys `remove` removed."""
    manifest = read_manifest(root)
    manifest.update(changes or {})
    for key in remove:
        manifest.pop(key, None)
    write_json(root / "manifest.json", manifest)


def write_native_package(
    root: Path,
    *,
    name: str = "synthetic",
    engine: str = "sprite",
    frame_count: int = FRAME_COUNT,
    width: int = WIDTH,
    height: int = HEIGHT,
    fps: float = FPS,
    frames: Literal["video", "png", "jpg"] = "video",
    audio: bool = True,
    feature_columns: int | None = 2,
    models: Mapping[str, str] | None = None,
) -> SyntheticPackage:
    """Write a valid `lipsync-package/1` package into directory `root` (created).

    Frames as `frames.mp4` ("video") or `frames/00000.png`... ("png", lossless) or ".jpg"; `boxes.json`;
    `audio.wav` (PCM16 mono 16 kHz, as long as the video) when `audio`; `features.npy` float32
    `[frame_count, feature_columns]` unless `feature_columns` is None; one placeholder file per
    `models` role -> file name. A sprite package also gets the "sprite" options block.
    """
    root.mkdir(parents=True, exist_ok=True)
    pixels = synthetic_frames(frame_count, width, height)
    boxes = synthetic_boxes(frame_count, width, height)
    manifest: dict[str, object] = {
        "format": "lipsync-package/1",
        "name": name,
        "engine": engine,
        "fps": fps,
        "frame_count": frame_count,
        "width": width,
        "height": height,
        "boxes": "boxes.json",
    }
    if frames == "video":
        write_video(root / "frames.mp4", pixels, fps)
        manifest["frames"] = "frames.mp4"
    else:
        write_images(root / "frames", pixels, f".{frames}")
        manifest["frames"] = "frames"
    write_json(root / "boxes.json", boxes.tolist())
    audio_path = None
    if audio:
        audio_path = root / "audio.wav"
        write_wav(audio_path, frame_count / fps)
        manifest["audio"] = "audio.wav"
    features = None
    if feature_columns is not None:
        features = synthetic_features(frame_count, feature_columns)
        np.save(root / "features.npy", features)
        manifest["features"] = "features.npy"
    if models:
        for file in models.values():
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).write_bytes(PLACEHOLDER_MODEL)
        manifest["models"] = dict(models)
    if engine == "sprite":
        manifest["sprite"] = SPRITE_OPTIONS
    write_json(root / "manifest.json", manifest)
    return SyntheticPackage(root, pixels, boxes, features, float(fps), audio_path)


def write_synctalk_package(
    root: Path,
    *,
    name: str | None = "synthetic-synctalk",
    frame_count: int = FRAME_COUNT,
    width: int = WIDTH,
    height: int = HEIGHT,
    fps: float = FPS,
    boxes_from: Literal["crop_rectangles", "landmarks", "both"] = "crop_rectangles",
    box_rows: int | None = None,
    feature_rows: int | None = None,
    features: bool = True,
    audio: bool = True,
    checkpoint: bool = True,
    engine_videos: bool = True,
) -> SyntheticPackage:
    """Write a valid SyncTalk_2D-layout package into directory `root` (created), shaped as the seed's.

    `package_info.json` (the reference's keys; skipped when `name` is None), `full_body_video.mp4`,
    `cache/crop_rectangles.json` and/or `landmarks/<i>.lms` per `boxes_from` (`box_rows` boxes, default
    one per frame), `aud_ave.npy` float32 `[feature_rows, 512]` (default one row per frame) when
    `features`, `aud.wav` when `audio`, a placeholder `checkpoint/model_best.onnx` when `checkpoint`,
    and the crops_328 / rois_320 / model_inputs videos (cut from the frames) when `engine_videos`.
    """
    root.mkdir(parents=True, exist_ok=True)
    pixels = synthetic_frames(frame_count, width, height)
    boxes = synthetic_boxes(box_rows if box_rows is not None else frame_count, width, height)
    write_video(root / "full_body_video.mp4", pixels, fps)
    if name is not None:
        video = {"video_file": "full_body_video.mp4", "frame_count": frame_count, "fps": fps}
        write_json(
            root / "package_info.json",
            {
                "package_type": "mp4_video_package",
                "package_version": "2.0",
                "dataset_name": name,
                "videos": {"full_body_img": video},
                "onnx": {"file": "checkpoint/model_best.onnx", "opset": 17},
            },
        )
    if boxes_from in ("crop_rectangles", "both"):
        rectangles = {
            str(index): {"rect": box.tolist(), "original_path": f"{index}.jpg"}
            for index, box in enumerate(boxes)
        }
        write_json(root / "cache" / "crop_rectangles.json", rectangles)
    if boxes_from in ("landmarks", "both"):
        write_landmarks(root / "landmarks", boxes)
    written_features = None
    if features:
        written_features = synthetic_features(feature_rows if feature_rows is not None else frame_count, 512)
        np.save(root / "aud_ave.npy", written_features)
    audio_path = None
    if audio:
        audio_path = root / "aud.wav"
        write_wav(audio_path, frame_count / fps)
    if checkpoint:
        (root / "checkpoint").mkdir(exist_ok=True)
        (root / "checkpoint" / "model_best.onnx").write_bytes(PLACEHOLDER_MODEL)
    if engine_videos:
        _write_engine_videos(root, pixels, boxes, fps)
    return SyntheticPackage(root, pixels, boxes, written_features, float(fps), audio_path)


def _write_engine_videos(root: Path, pixels: NDArray[np.uint8], boxes: NDArray[np.int32], fps: float) -> None:
    """The 328 crops, their 320 centres, and those with the mouth half masked, as the reference cuts them."""
    crops = np.stack(
        [
            cv2.resize(frame[y1:y2, x1:x2], (328, 328))
            for frame, (x1, y1, x2, y2) in zip(pixels, boxes, strict=False)
        ]
    )
    rois = np.ascontiguousarray(crops[:, 4:324, 4:324])
    masked = rois.copy()
    masked[:, 160:] = 0
    write_video(root / "crops_328_video.mp4", crops, fps)
    write_video(root / "rois_320_video.mp4", rois, fps)
    write_video(root / "model_inputs_video.mp4", masked, fps)
