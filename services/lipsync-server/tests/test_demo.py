"""The built-in demo avatar package: generated once, complete, and talking."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from lipsync_server.audio import frame_features, read_wav
from lipsync_server.demo import DEMO_DIR, ensure_demo_package
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.packages.loader import load_package


@pytest.fixture(scope="module")
def demo(demo_cache: Path) -> Path:
    return ensure_demo_package(demo_cache)


@pytest.fixture(scope="module")
def manifest(demo: Path) -> dict[str, object]:
    loaded = json.loads((demo / "manifest.json").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def features(demo: Path, manifest: dict[str, object]) -> NDArray[np.float32]:
    pcm, rate = read_wav(demo / "audio.wav")
    frame_count = manifest["frame_count"]
    assert isinstance(frame_count, int)
    return frame_features(pcm, rate, 25.0, frame_count)


def digest(root: Path) -> dict[str, str]:
    """The SHA-256 of every file under `root`, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_package_is_generated_once_and_then_reused(demo_cache: Path, demo: Path) -> None:
    before = (demo / "manifest.json").stat()
    again = ensure_demo_package(demo_cache)
    after = (again / "manifest.json").stat()
    assert again == demo == demo_cache / DEMO_DIR
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # No staging directory left (the server's base videos may share the cache directory).
    assert [path.name for path in demo_cache.iterdir() if path.name.startswith(".")] == []
    assert DEMO_DIR in [path.name for path in demo_cache.iterdir()]


def test_the_manifest_describes_a_native_sprite_package(manifest: dict[str, object]) -> None:
    assert manifest["format"] == "lipsync-package/1"
    assert manifest["name"] == "demo"
    assert manifest["engine"] == "sprite"
    assert manifest["fps"] == 25
    assert (manifest["width"], manifest["height"]) == (1280, 720)
    assert manifest["frames"] == "frames"
    assert manifest["boxes"] == "boxes.json"
    assert manifest["audio"] == "audio.wav"
    assert manifest["sprite"] == {
        "mouth_center": [0.5, 0.75],
        "mouth_width": 0.36,
        "smile": 0.06,
        "lip_color": [190, 92, 98],
        "inner_color": [74, 22, 34],
        "teeth_color": [246, 242, 234],
    }


def test_there_are_ten_seconds_or_more_of_720p_frames(demo: Path, manifest: dict[str, object]) -> None:
    frames = sorted((demo / "frames").iterdir())
    assert manifest["frame_count"] == len(frames) >= 250
    assert [path.name for path in frames[:2]] == ["00000.jpg", "00001.jpg"]
    for path in (frames[0], frames[-1]):
        image = cv2.imread(str(path))
        assert image is not None
        assert image.shape == (720, 1280, 3)


def test_the_face_boxes_follow_the_head_inside_the_frame(demo: Path, manifest: dict[str, object]) -> None:
    boxes = np.array(json.loads((demo / "boxes.json").read_text(encoding="utf-8")))
    assert boxes.shape == (manifest["frame_count"], 4)
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= 1280).all()
    assert (boxes[:, 3] <= 720).all()
    assert (boxes[:, 2] - boxes[:, 0] == 180).all()
    assert len({tuple(box) for box in boxes.tolist()}) > 10  # the head moves


def test_the_audio_is_16_khz_mono_pcm16_as_long_as_the_video(demo: Path, manifest: dict[str, object]) -> None:
    pcm, rate = read_wav(demo / "audio.wav")
    assert rate == 16000
    frame_count = manifest["frame_count"]
    assert isinstance(frame_count, int)
    assert pcm.shape[0] == frame_count * 16000 // 25


def test_the_voice_opens_and_closes_the_mouth_in_the_first_seconds(features: NDArray[np.float32]) -> None:
    openness = features[: 4 * 25, 0]
    inner = openness[1:-1]
    peaks = (inner > openness[:-2]) & (inner >= openness[2:]) & (inner > 0.5)
    valleys = (inner < openness[:-2]) & (inner <= openness[2:]) & (inner < 0.2)
    assert peaks.sum() >= 6
    assert valleys.sum() >= 5


def test_the_voice_has_both_round_and_wide_vowels(features: NDArray[np.float32]) -> None:
    voiced = features[features[:, 0] > 0.7, 1]
    assert (voiced > 0.8).sum() >= 10
    assert (voiced < 0.3).sum() >= 10


def test_the_frames_mouth_is_the_sprite_engines_closed_mouth(demo: Path) -> None:
    package = SpriteEngine().prepare(load_package(demo))
    for frame_id in (0, 137):
        x1, y1, x2, y2 = package.boxes[frame_id].tolist()
        base = package.frames.frame(frame_id)[y1:y2, x1:x2].astype(np.int16)
        closed = SpriteEngine().infer(package, [FrameJob(frame_id, np.array([0.0, 0.5], np.float32))])[0]
        opened = SpriteEngine().infer(package, [FrameJob(frame_id, np.array([1.0, 0.7], np.float32))])[0]
        # Only JPEG noise and the antialiased edges drawn twice tell the two closed mouths apart.
        assert np.abs(closed - base).mean() < 0.5
        assert np.abs(opened - base).mean() > 3.0


def test_an_incomplete_package_is_generated_again_identically(tmp_path: Path, demo: Path) -> None:
    broken = tmp_path / DEMO_DIR
    shutil.copytree(demo, broken)
    (broken / "frames" / "00042.jpg").unlink()
    assert ensure_demo_package(tmp_path) == broken
    assert digest(broken) == digest(demo)
