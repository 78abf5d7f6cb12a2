"""The seed's SyncTalk_2D layout: loaded as it is, with its real file shapes."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_factory import (
    FRAME_COUNT,
    HEIGHT,
    WIDTH,
    frames_match,
    synthetic_frames,
    write_json,
    write_landmarks,
    write_synctalk_package,
    write_video,
    write_wav,
)

from lipsync_server.errors import PackageError
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import SYNCTALK_FORMAT
from lipsync_server.packages.synctalk import read_package_info


def test_a_synctalk_package_loads_with_its_counts_sizes_boxes_features_and_fps(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders")

    package = load_package(written.root)

    assert (package.name, package.engine, package.format) == (
        "synthetic-synctalk",
        "unet328",
        SYNCTALK_FORMAT,
    )
    assert (package.frame_count, package.width, package.height, package.fps) == (
        FRAME_COUNT,
        WIDTH,
        HEIGHT,
        25.0,
    )
    assert frames_match(np.stack([package.frames.frame(i) for i in range(FRAME_COUNT)]), written.frames)
    np.testing.assert_array_equal(package.boxes, written.boxes)
    assert written.features is not None
    assert package.audio_features is not None
    np.testing.assert_array_equal(package.audio_features, written.features)
    assert package.audio_features.shape == (FRAME_COUNT, 512)
    assert package.audio_path == written.root.resolve() / "aud.wav"


def test_the_other_videos_and_the_checkpoint_are_recorded_but_not_decoded(tmp_path: Path) -> None:
    root = write_synctalk_package(tmp_path / "sanders").root.resolve()

    package = load_package(root)

    assert package.videos == ("full_body", "crops_328", "rois_320", "model_inputs")
    assert dict(package.model_files) == {
        "crops_328": root / "crops_328_video.mp4",
        "rois_320": root / "rois_320_video.mp4",
        "model_inputs": root / "model_inputs_video.mp4",
        "unet": root / "checkpoint" / "model_best.onnx",
    }


def test_only_the_full_body_video_and_the_boxes_are_required(tmp_path: Path) -> None:
    written = write_synctalk_package(
        tmp_path / "bare", name=None, features=False, audio=False, checkpoint=False, engine_videos=False
    )

    package = load_package(written.root)

    assert package.name == "bare"
    assert package.videos == ("full_body",)
    assert dict(package.model_files) == {}
    assert package.audio_features is None
    assert package.audio_path is None


def test_boxes_from_landmarks_follow_the_synctalk_formula(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders", boxes_from="landmarks")

    package = load_package(written.root)

    np.testing.assert_array_equal(package.boxes, written.boxes)


def test_landmark_files_are_ordered_by_frame_number_not_by_name(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders", frame_count=12, boxes_from="landmarks")

    package = load_package(written.root)

    # Name order would put 10.lms and 11.lms before 2.lms.
    np.testing.assert_array_equal(package.boxes[10], written.boxes[10])
    np.testing.assert_array_equal(package.boxes[2], written.boxes[2])


def test_crop_rectangles_are_preferred_to_landmarks(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders", boxes_from="both")
    write_landmarks(written.root / "landmarks", written.boxes + np.array([3, 3, 3, 3], np.int32))

    package = load_package(written.root)

    np.testing.assert_array_equal(package.boxes, written.boxes)


def test_a_plain_list_of_crop_rectangles_is_accepted(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders")
    write_json(written.root / "cache" / "crop_rectangles.json", written.boxes.tolist())

    np.testing.assert_array_equal(load_package(written.root).boxes, written.boxes)


def test_the_name_comes_from_the_request_then_package_info_then_the_directory(tmp_path: Path) -> None:
    with_info = write_synctalk_package(tmp_path / "dir-a", name="from-info").root
    without_info = write_synctalk_package(tmp_path / "dir-b", name=None).root

    assert load_package(with_info, name="requested").name == "requested"
    assert load_package(with_info).name == "from-info"
    assert load_package(without_info).name == "dir-b"


def test_a_directory_name_that_is_not_safe_is_refused_when_nothing_else_names_the_package(
    tmp_path: Path,
) -> None:
    root = write_synctalk_package(tmp_path / "my model", name=None).root

    with pytest.raises(PackageError, match="directory name 'my model' is not a safe model name"):
        load_package(root)
    assert load_package(root, name="my-model").name == "my-model"


def test_fps_comes_from_package_info_else_from_the_video(tmp_path: Path) -> None:
    with_info = write_synctalk_package(tmp_path / "a", fps=20).root
    without_info = write_synctalk_package(tmp_path / "b", name=None, fps=30).root

    assert load_package(with_info).fps == 20.0
    assert load_package(without_info).fps == 30.0


def test_counts_that_differ_by_a_frame_use_the_smallest_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The real "sanders" package has 523 frames and 522 feature rows.
    written = write_synctalk_package(tmp_path / "sanders", feature_rows=FRAME_COUNT - 1)

    with caplog.at_level(logging.WARNING):
        package = load_package(written.root)

    assert package.frame_count == FRAME_COUNT - 1
    assert len(package.boxes) == FRAME_COUNT - 1
    assert package.audio_features is not None
    assert len(package.audio_features) == FRAME_COUNT - 1
    assert (
        "frame counts differ (full_body_video.mp4 12, crop_rectangles.json 12, aud_ave.npy 11)" in caplog.text
    )


def test_counts_that_differ_by_more_than_a_second_are_refused(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders", fps=5, box_rows=4)

    with pytest.raises(PackageError, match=r"differ by more than one second \(5 frames\)") as refused:
        load_package(written.root)

    assert refused.value.path.name == "crop_rectangles.json"


def test_a_video_shorter_than_its_boxes_and_features_is_named_as_the_odd_one_out(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders", fps=5)
    write_video(written.root / "full_body_video.mp4", synthetic_frames(4, WIDTH, HEIGHT), fps=5)

    with pytest.raises(
        PackageError, match=r"full_body_video\.mp4 4, crop_rectangles\.json 12, aud_ave\.npy 12"
    ) as refused:
        load_package(written.root)

    assert refused.value.path.name == "full_body_video.mp4"


def test_a_package_info_count_that_disagrees_with_the_video_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_synctalk_package(tmp_path / "sanders")
    write_video(written.root / "full_body_video.mp4", synthetic_frames(FRAME_COUNT - 1, WIDTH, HEIGHT))

    with caplog.at_level(logging.WARNING):
        assert load_package(written.root).frame_count == FRAME_COUNT - 1

    assert "says 12 frames but full_body_video.mp4 has 11" in caplog.text


def test_a_stereo_aud_wav_is_skipped_when_the_features_are_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_synctalk_package(tmp_path / "sanders")
    write_wav(written.root / "aud.wav", 0.48, channels=2)

    with caplog.at_level(logging.WARNING):
        package = load_package(written.root)

    assert package.audio_path is None
    assert "aud.wav: must be PCM16 mono 16000 Hz" in caplog.text


def test_a_stereo_aud_wav_is_refused_when_there_are_no_features(tmp_path: Path) -> None:
    written = write_synctalk_package(tmp_path / "sanders", features=False)
    write_wav(written.root / "aud.wav", 0.48, channels=2)

    with pytest.raises(PackageError, match="must be PCM16 mono 16000 Hz") as refused:
        load_package(written.root)

    assert refused.value.path.name == "aud.wav"


Breakage = Callable[[Path], object]


def _landmark_file(root: Path, frame: int, text: str) -> None:
    (root / "landmarks" / f"{frame}.lms").write_text(text)


BROKEN: dict[str, tuple[Breakage, str, str]] = {
    # name: (what breaks the package, the file named, a phrase of the problem)
    "no full-body video": (
        lambda root: (root / "full_body_video.mp4").unlink(),
        "full_body_video.mp4",
        "file is missing",
    ),
    "full-body video undecodable": (
        lambda root: (root / "full_body_video.mp4").write_bytes(b"\x00" * 1000),
        "full_body_video.mp4",
        "cannot be opened as a video",
    ),
    "no boxes at all": (
        lambda root: (root / "cache" / "crop_rectangles.json").unlink(),
        "sanders",
        "has no crop boxes: neither cache/crop_rectangles.json nor landmarks/*.lms",
    ),
    "crop rectangles with a gap": (
        lambda root: write_json(
            root / "cache" / "crop_rectangles.json", {"0": {"rect": [1, 1, 9, 9]}, "2": {}}
        ),
        "crop_rectangles.json",
        "keys must be the frame indices 0 to 1; found '2'",
    ),
    "crop rectangle without rect": (
        lambda root: write_json(root / "cache" / "crop_rectangles.json", {"0": {"box": [1, 1, 9, 9]}}),
        "crop_rectangles.json",
        "box 0 must be 4 non-negative integers [x1, y1, x2, y2], is None",
    ),
    "crop rectangle outside the frame": (
        lambda root: write_json(root / "cache" / "crop_rectangles.json", [[100, 60, 170, 130]] * FRAME_COUNT),
        "crop_rectangles.json",
        "box 0 [100, 60, 170, 130] is outside the 160x120 frame",
    ),
    "features with the wrong width": (
        lambda root: np.save(root / "aud_ave.npy", np.zeros((FRAME_COUNT, 256), np.float32)),
        "aud_ave.npy",
        "must have 512 columns, has shape [12, 256]",
    ),
    "package info not JSON": (
        lambda root: (root / "package_info.json").write_text("{"),
        "package_info.json",
        "is not valid JSON",
    ),
    "package info fps a string": (
        lambda root: write_json(root / "package_info.json", {"fps": "25"}),
        "package_info.json",
        "'fps' must be a positive number, got '25'",
    ),
    "package info frame count negative": (
        lambda root: write_json(
            root / "package_info.json", {"videos": {"full_body_img": {"frame_count": -1}}}
        ),
        "package_info.json",
        "'frame_count' must be a positive integer, got -1",
    ),
    "package info name unsafe": (
        lambda root: write_json(root / "package_info.json", {"dataset_name": "Sanders Model"}),
        "package_info.json",
        "name 'Sanders Model' is not a safe model name",
    ),
}

LANDMARKS_BROKEN: dict[str, tuple[Breakage, str, str]] = {
    "landmark gap": (
        lambda root: (root / "landmarks" / "5.lms").unlink(),
        "5.lms",
        "is missing: landmarks must cover frames 0 to N-1",
    ),
    "landmark file not numbered": (
        lambda root: (root / "landmarks" / "extra.lms").write_text("1 2\n"),
        "extra.lms",
        "landmark files must be named by frame number",
    ),
    "landmark file numbered twice": (
        lambda root: (root / "landmarks" / "03.lms").write_text("1 2\n"),
        "3.lms",
        "is a second landmark file for frame 3",
    ),
    "landmark file with 68 points": (
        lambda root: _landmark_file(root, 4, "1 2\n" * 68),
        "4.lms",
        "must hold 110 points, holds 68",
    ),
    "landmark line not numeric": (
        lambda root: _landmark_file(root, 4, "1 2\n" * 10 + "x y\n"),
        "4.lms",
        "line 11 must be two numbers 'x y', is 'x y'",
    ),
    "landmark line of three numbers": (
        lambda root: _landmark_file(root, 4, "1 2 3\n"),
        "4.lms",
        "line 1 must be two numbers 'x y'",
    ),
    "landmark box outside the frame": (
        lambda root: write_landmarks(
            root / "landmarks", np.array([[150, 10, 190, 50]] * FRAME_COUNT, np.int32)
        ),
        "0.lms",
        "gives box [150, 10, 190, 50] is outside the 160x120 frame",
    ),
    "landmarks giving an empty box": (
        lambda root: _landmark_file(root, 7, "50 50\n" * 110),
        "7.lms",
        "gives box [50, 50, 50, 50] is empty",
    ),
}


@pytest.mark.parametrize(("breakage", "file", "problem"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_package_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, breakage: Breakage, file: str, problem: str
) -> None:
    root = write_synctalk_package(tmp_path / "sanders").root
    breakage(root)

    with pytest.raises(PackageError) as refused:
        load_package(root)

    assert refused.value.path.name == file
    assert problem in refused.value.problem


@pytest.mark.parametrize(
    ("breakage", "file", "problem"), LANDMARKS_BROKEN.values(), ids=LANDMARKS_BROKEN.keys()
)
def test_broken_landmarks_are_refused_naming_the_file_and_the_problem(
    tmp_path: Path, breakage: Breakage, file: str, problem: str
) -> None:
    root = write_synctalk_package(tmp_path / "sanders", boxes_from="landmarks").root
    breakage(root)

    with pytest.raises(PackageError) as refused:
        load_package(root)

    assert refused.value.path.name == file
    assert problem in refused.value.problem


@pytest.mark.parametrize(
    "relative", ["aud_ave.npy", "full_body_video.mp4", "cache/crop_rectangles.json", "package_info.json"]
)
def test_a_seed_file_that_links_outside_the_package_is_refused(tmp_path: Path, relative: str) -> None:
    root = write_synctalk_package(tmp_path / "sanders").root
    (root / relative).rename(tmp_path / "outside")
    (root / relative).symlink_to(tmp_path / "outside")

    with pytest.raises(PackageError, match="leads outside the package directory") as refused:
        load_package(root)

    assert refused.value.path == root.resolve() / relative


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
INFO_KEYS = st.sampled_from(["name", "dataset_name", "fps", "frame_count", "videos", "full_body_img"])


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        JSON_VALUES,
        st.dictionaries(INFO_KEYS, JSON_VALUES, max_size=4),
        st.fixed_dictionaries({"videos": st.fixed_dictionaries({"full_body_img": JSON_VALUES})}),
    )
)
def test_any_package_info_is_read_or_refused_with_a_package_error(
    tmp_path_factory: pytest.TempPathFactory, info: object
) -> None:
    path = tmp_path_factory.getbasetemp() / "package_info.json"
    path.write_text(json.dumps(info))

    try:
        read = read_package_info(path)
    except PackageError:
        return
    assert read.fps is None or (math.isfinite(read.fps) and read.fps > 0)
    assert read.frame_count is None or read.frame_count >= 1
