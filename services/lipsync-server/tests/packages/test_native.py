"""The native `lipsync-package/1` format: what loads, and every way a package is refused."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from package_factory import (
    FPS,
    FRAME_COUNT,
    HEIGHT,
    SPRITE_OPTIONS,
    WIDTH,
    frames_match,
    synthetic_frames,
    update_manifest,
    write_images,
    write_json,
    write_native_package,
    write_video,
    write_wav,
)

from lipsync_server.errors import PackageError, UnsupportedEngineError
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import NATIVE_FORMAT


def test_a_package_with_an_mp4_loads_with_its_counts_sizes_boxes_and_fps(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg")

    package = load_package(written.root)

    assert (package.name, package.engine, package.format) == ("synthetic", "sprite", NATIVE_FORMAT)
    assert (package.frame_count, package.width, package.height, package.fps) == (
        FRAME_COUNT,
        WIDTH,
        HEIGHT,
        FPS,
    )
    assert frames_match(np.stack([package.frames.frame(i) for i in range(FRAME_COUNT)]), written.frames)
    np.testing.assert_array_equal(package.boxes, written.boxes)
    assert package.boxes.dtype == np.int32
    assert written.features is not None
    assert package.audio_features is not None
    np.testing.assert_array_equal(package.audio_features, written.features)
    assert package.audio_path == written.root.resolve() / "audio.wav"
    assert package.videos == ("full_body",)
    assert package.root == written.root.resolve()


def test_a_directory_of_png_images_loads_frame_for_frame_exactly(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg", frames="png")

    package = load_package(written.root)

    assert package.frame_count == FRAME_COUNT
    for index in range(FRAME_COUNT):
        np.testing.assert_array_equal(package.frames.frame(index), written.frames[index])


def test_a_directory_of_jpeg_images_loads(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg", frames="jpg")

    package = load_package(written.root)

    assert frames_match(np.stack([package.frames.frame(i) for i in range(FRAME_COUNT)]), written.frames)


def test_loaded_frames_are_read_only(tmp_path: Path) -> None:
    package = load_package(write_native_package(tmp_path / "pkg").root)

    with pytest.raises(ValueError, match="read-only"):
        package.frames.frame(0)[0, 0, 0] = 1


def test_audio_features_and_models_are_optional(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg", audio=False, feature_columns=None)

    package = load_package(written.root)

    assert package.audio_path is None
    assert package.audio_features is None
    assert dict(package.model_files) == {}


def test_model_files_are_recorded_by_role_without_being_opened(tmp_path: Path) -> None:
    models = {"unet": "model.onnx", "audio_encoder": "encoders/audio.onnx"}
    written = write_native_package(tmp_path / "pkg", engine="unet328", feature_columns=512, models=models)

    package = load_package(written.root)

    assert package.engine == "unet328"
    root = written.root.resolve()
    assert dict(package.model_files) == {
        "unet": root / "model.onnx",
        "audio_encoder": root / "encoders/audio.onnx",
    }


def test_the_engine_options_block_is_copied_into_the_package(tmp_path: Path) -> None:
    package = load_package(write_native_package(tmp_path / "pkg").root)

    assert dict(package.engine_options) == SPRITE_OPTIONS


def test_a_requested_name_replaces_the_manifest_name(tmp_path: Path) -> None:
    package = load_package(write_native_package(tmp_path / "pkg").root, name="other-name")

    assert package.name == "other-name"


def test_a_requested_name_that_is_not_safe_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"requested name '\.\./x' is not a safe model name"):
        load_package(write_native_package(tmp_path / "pkg").root, name="../x")


def test_an_image_directory_ignores_files_that_are_not_images(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg", frames="png")
    (written.root / "frames" / "README.txt").write_text("not a frame")

    assert load_package(written.root).frame_count == FRAME_COUNT


def test_a_symlink_that_stays_inside_the_package_is_followed(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg")
    (written.root / "data").mkdir()
    (written.root / "boxes.json").rename(written.root / "data" / "boxes.json")
    (written.root / "linked.json").symlink_to(written.root / "data" / "boxes.json")
    update_manifest(written.root, {"boxes": "linked.json"})

    np.testing.assert_array_equal(load_package(written.root).boxes, written.boxes)


def test_an_unknown_manifest_key_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_native_package(tmp_path / "pkg")
    update_manifest(written.root, {"feature": "typo.npy"})

    with caplog.at_level(logging.WARNING):
        load_package(written.root)

    assert "ignoring unknown key 'feature'" in caplog.text


def test_audio_much_shorter_than_the_video_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_native_package(tmp_path / "pkg")
    write_wav(written.root / "audio.wav", 0.1)

    with caplog.at_level(logging.WARNING):
        load_package(written.root)

    assert "audio lasts 0.10 s but the 12 frames last 0.48 s" in caplog.text


def test_an_engine_no_package_may_name_is_refused_as_unsupported(tmp_path: Path) -> None:
    written = write_native_package(tmp_path / "pkg")
    update_manifest(written.root, {"engine": "wav2lip"})

    with pytest.raises(UnsupportedEngineError, match="unknown engine 'wav2lip'") as refused:
        load_package(written.root)

    assert refused.value.path.name == "manifest.json"


Breakage = Callable[[Path], None]


def _manifest(**changes: object) -> Breakage:
    return lambda root: update_manifest(root, changes)


def _without(key: str) -> Breakage:
    return lambda root: update_manifest(root, remove=[key])


def _write(relative: str, content: bytes | str) -> Breakage:
    def write(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)

    return write


def _boxes(boxes: object) -> Breakage:
    return lambda root: write_json(root / "boxes.json", boxes)


def _features(array: np.ndarray) -> Breakage:
    return lambda root: np.save(root / "features.npy", array)


def _remove(relative: str) -> Breakage:
    return lambda root: (root / relative).unlink()


def _frames_video(count: int, width: int = WIDTH, height: int = HEIGHT) -> Breakage:
    return lambda root: write_video(root / "frames.mp4", synthetic_frames(count, width, height))


def _image_dir_with(name: str, frame: np.ndarray | None) -> Breakage:
    def write(root: Path) -> None:
        write_images(root / "frames", synthetic_frames(FRAME_COUNT, WIDTH, HEIGHT))
        update_manifest(root, {"frames": "frames"})
        if frame is None:
            (root / "frames" / name).write_bytes(b"not an image")
        else:
            cv2.imwrite(str(root / "frames" / name), frame)

    return write


def _empty_image_dir(root: Path) -> None:
    (root / "frames").mkdir()
    (root / "frames" / "notes.txt").write_text("no images here")
    update_manifest(root, {"frames": "frames"})


_GOOD_BOX = [50, 30, 90, 70]

BROKEN: dict[str, tuple[Breakage, str, str]] = {
    # name: (what breaks the package, the file named, a phrase of the problem)
    "manifest not JSON": (_write("manifest.json", "{not json"), "manifest.json", "is not valid JSON"),
    "manifest not an object": (
        _write("manifest.json", "[1, 2]"),
        "manifest.json",
        "must be a JSON object, is list",
    ),
    "format missing": (_without("format"), "manifest.json", "'format' is missing"),
    "format unknown": (
        _manifest(format="lipsync-package/2"),
        "manifest.json",
        "unknown format 'lipsync-package/2'",
    ),
    "name missing": (_without("name"), "manifest.json", "'name' is missing"),
    "name with a slash": (_manifest(name="a/b"), "manifest.json", "name 'a/b' is not a safe model name"),
    "name empty": (_manifest(name=""), "manifest.json", "name '' is not a safe model name"),
    "name too long": (_manifest(name="a" * 65), "manifest.json", "is not a safe model name"),
    "name starting with a dot": (_manifest(name=".hidden"), "manifest.json", "is not a safe model name"),
    "engine not a string": (_manifest(engine=["sprite"]), "manifest.json", "unknown engine ['sprite']"),
    "fps zero": (_manifest(fps=0), "manifest.json", "'fps' must be a positive number, got 0"),
    "fps a string": (_manifest(fps="25"), "manifest.json", "'fps' must be a positive number, got '25'"),
    "fps a boolean": (_manifest(fps=True), "manifest.json", "'fps' must be a positive number, got True"),
    "fps not finite": (
        _write(
            "manifest.json", '{"format": "lipsync-package/1", "name": "x", "engine": "sprite", "fps": NaN}'
        ),
        "manifest.json",
        "'fps' must be a positive number, got nan",
    ),
    "frame_count fractional": (
        _manifest(frame_count=1.5),
        "manifest.json",
        "'frame_count' must be an integer from 1 to 10000000, got 1.5",
    ),
    "frame_count zero": (
        _manifest(frame_count=0),
        "manifest.json",
        "'frame_count' must be an integer from 1 to 10000000, got 0",
    ),
    "width missing": (_without("width"), "manifest.json", "'width' is missing"),
    "height too large": (
        _manifest(height=10**40),
        "manifest.json",
        "'height' must be an integer from 1 to 65536, got 10000000000000000000000000000000000000000",
    ),
    "frames missing from the manifest": (_without("frames"), "manifest.json", "'frames' is missing"),
    "frames file missing": (_remove("frames.mp4"), "frames.mp4", "is missing"),
    "frames not a video": (_write("frames.mp4", b"\x00" * 4096), "frames.mp4", "cannot be opened as a video"),
    "video shorter than frame_count": (
        _frames_video(FRAME_COUNT - 2),
        "frames.mp4",
        "has 10 frames; manifest.json says frame_count 12",
    ),
    "video longer than frame_count": (
        _frames_video(FRAME_COUNT + 5),
        "frames.mp4",
        "has more than 12 frames; manifest.json says frame_count 12",
    ),
    "video of another size": (
        _frames_video(FRAME_COUNT, 128, HEIGHT),
        "frames.mp4",
        "frames are 128x120; manifest.json says 160x120",
    ),
    "image undecodable": (_image_dir_with("00003.png", None), "00003.png", "cannot be decoded as an image"),
    "image of another size": (
        _image_dir_with("00004.png", np.zeros((10, 10, 3), np.uint8)),
        "00004.png",
        "is 10x10; 00000.png is 160x120",
    ),
    "image directory without images": (_empty_image_dir, "frames", "holds no JPEG or PNG images"),
    "image directory with too many images": (
        _image_dir_with("00012.png", synthetic_frames(1, WIDTH, HEIGHT)[0]),
        "frames",
        "has 13 images; manifest.json says frame_count 12",
    ),
    "boxes file missing": (_remove("boxes.json"), "boxes.json", "is missing"),
    "boxes not JSON": (_write("boxes.json", "[[1, 2"), "boxes.json", "is not valid JSON"),
    "boxes not a list": (
        _boxes({"0": _GOOD_BOX}),
        "boxes.json",
        "must be a JSON list of [x1, y1, x2, y2] boxes, is dict",
    ),
    "boxes too few": (
        _boxes([_GOOD_BOX] * 11),
        "boxes.json",
        "has 11 boxes; manifest.json says frame_count 12",
    ),
    "box of three numbers": (
        _boxes([_GOOD_BOX] * 11 + [[1, 2, 3]]),
        "boxes.json",
        "box 11 must be 4 non-negative integers",
    ),
    "box of floats": (
        _boxes([[50.5, 30, 90, 70]] + [_GOOD_BOX] * 11),
        "boxes.json",
        "box 0 must be 4 non-negative integers",
    ),
    "box negative": (
        _boxes([_GOOD_BOX] * 5 + [[-1, 30, 90, 70]] + [_GOOD_BOX] * 6),
        "boxes.json",
        "box 5 must be 4 non-negative",
    ),
    "box outside the frame": (
        _boxes([_GOOD_BOX] * 7 + [[100, 30, 161, 70]] + [_GOOD_BOX] * 4),
        "boxes.json",
        "box 7 [100, 30, 161, 70] is outside the 160x120 frame",
    ),
    "box empty": (
        _boxes([_GOOD_BOX] * 2 + [[50, 30, 50, 70]] + [_GOOD_BOX] * 9),
        "boxes.json",
        "box 2 [50, 30, 50, 70] is empty",
    ),
    "features missing": (_remove("features.npy"), "features.npy", "is missing"),
    "features not npy": (
        _write("features.npy", b"garbage" * 100),
        "features.npy",
        "is not a .npy array file",
    ),
    "features float64": (
        _features(np.zeros((FRAME_COUNT, 2))),
        "features.npy",
        "must hold float32 values, holds float64",
    ),
    "features one-dimensional": (
        _features(np.zeros(FRAME_COUNT, np.float32)),
        "features.npy",
        "must be a 2-D [frames, features] array, has shape [12]",
    ),
    "features too few rows": (
        _features(np.zeros((FRAME_COUNT - 1, 2), np.float32)),
        "features.npy",
        "has 11 rows; manifest.json says frame_count 12",
    ),
    "features with NaN": (
        _features(np.full((FRAME_COUNT, 2), np.nan, np.float32)),
        "features.npy",
        "contains NaN or infinite values",
    ),
    "audio missing": (_remove("audio.wav"), "audio.wav", "is missing"),
    "audio not WAV": (_write("audio.wav", b"RIFX" + b"\x00" * 64), "audio.wav", "is not a PCM WAV file"),
    "audio stereo": (
        lambda root: write_wav(root / "audio.wav", 0.48, channels=2),
        "audio.wav",
        "must be PCM16 mono 16000 Hz; is 16-bit, 2 channel(s), 16000 Hz",
    ),
    "audio 44.1 kHz": (
        lambda root: write_wav(root / "audio.wav", 0.48, sample_rate=44100),
        "audio.wav",
        "is 16-bit, 1 channel(s), 44100 Hz",
    ),
    "audio 8-bit": (
        lambda root: write_wav(root / "audio.wav", 0.48, sample_width=1),
        "audio.wav",
        "is 8-bit, 1 channel(s), 16000 Hz",
    ),
    "audio empty": (lambda root: write_wav(root / "audio.wav", 0), "audio.wav", "holds no audio samples"),
    "models not an object": (
        _manifest(models=["model.onnx"]),
        "manifest.json",
        "'models' must be an object of role -> file",
    ),
    "model file missing": (
        _manifest(models={"unet": "model.onnx"}),
        "model.onnx",
        "file is missing (model 'unet' in manifest.json)",
    ),
    "model role unsafe": (
        _manifest(models={"a b": "model.onnx"}),
        "manifest.json",
        "model role 'a b' is not a safe model name",
    ),
    "engine options not an object": (
        _manifest(sprite=[0.5, 0.75]),
        "manifest.json",
        "'sprite' options must be an object",
    ),
}


@pytest.mark.parametrize(("breakage", "file", "problem"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_package_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, breakage: Breakage, file: str, problem: str
) -> None:
    root = write_native_package(tmp_path / "pkg").root
    breakage(root)

    with pytest.raises(PackageError) as refused:
        load_package(root)

    assert refused.value.path.name == file
    assert problem in refused.value.problem
    assert str(refused.value) == f"{refused.value.path}: {refused.value.problem}"


ESCAPES = {
    "absolute path": "/etc/passwd",
    "parent directory": "../outside.json",
    "parent directory deeper in": "data/../../outside.json",
    "windows absolute path": "C:\\outside.json",
    "windows parent directory": "..\\outside.json",
    "NUL character": "boxes.json\x00.txt",
    "empty name": "",
}


@pytest.mark.parametrize("field", ["frames", "boxes", "audio", "features"])
@pytest.mark.parametrize("name", ESCAPES.values(), ids=ESCAPES.keys())
def test_a_file_name_that_leaves_the_package_is_refused(tmp_path: Path, field: str, name: str) -> None:
    root = write_native_package(tmp_path / "pkg").root
    (tmp_path / "outside.json").write_text(json.dumps([[50, 30, 90, 70]] * FRAME_COUNT))
    update_manifest(root, {field: name})

    with pytest.raises(PackageError) as refused:
        load_package(root)

    assert refused.value.path.name == "manifest.json"
    assert refused.value.problem.startswith(f"'{field}' ")


def test_a_model_file_name_that_leaves_the_package_is_refused(tmp_path: Path) -> None:
    root = write_native_package(tmp_path / "pkg").root
    (tmp_path / "model.onnx").write_bytes(b"outside")
    update_manifest(root, {"models": {"unet": "../model.onnx"}})

    with pytest.raises(PackageError, match=r"models\.unet '\.\./model\.onnx' must not contain '\.\.'"):
        load_package(root)


@pytest.mark.parametrize("field", ["boxes", "audio", "features", "frames"])
def test_a_symlink_that_leads_outside_the_package_is_refused(tmp_path: Path, field: str) -> None:
    root = write_native_package(tmp_path / "pkg").root
    manifest = json.loads((root / "manifest.json").read_text())
    target = tmp_path / f"outside-{manifest[field]}"
    (root / manifest[field]).rename(target)
    (root / manifest[field]).symlink_to(target)

    with pytest.raises(PackageError, match="leads outside the package directory") as refused:
        load_package(root)

    assert refused.value.path.name == "manifest.json"


def test_an_image_in_the_frame_directory_that_links_outside_is_refused(tmp_path: Path) -> None:
    root = write_native_package(tmp_path / "pkg", frames="png").root
    (root / "frames" / "00005.png").rename(tmp_path / "outside.png")
    (root / "frames" / "00005.png").symlink_to(tmp_path / "outside.png")

    with pytest.raises(PackageError, match=r"'frames' image '00005\.png' leads outside the package"):
        load_package(root)


def test_a_package_reached_through_a_symlinked_directory_loads(tmp_path: Path) -> None:
    root = write_native_package(tmp_path / "pkg").root
    os.symlink(root, tmp_path / "alias")

    package = load_package(tmp_path / "alias")

    assert package.root == root.resolve()
