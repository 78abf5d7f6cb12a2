"""Crop boxes: parsing box files, checking boxes against the frame, and the SyncTalk_2D landmark crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from package_factory import landmarks_for_box

from lipsync_server.errors import PackageError
from lipsync_server.packages.crops import (
    LANDMARK_POINTS,
    box_from_landmarks,
    boxes_from_landmarks,
    check_boxes_inside,
    find_bad_box,
    landmark_files,
    parse_box_list,
    parse_crop_rectangles,
    read_landmarks,
)

SOURCE = Path("boxes.json")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=3), children, max_size=5)
    ),
    max_leaves=20,
)


def test_a_box_list_becomes_an_int32_array_one_row_per_frame() -> None:
    boxes = parse_box_list([[1, 2, 30, 40], [5, 6, 70, 80]], SOURCE)

    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40], [5, 6, 70, 80]])


def test_the_reference_crop_rectangles_object_is_read_in_frame_order() -> None:
    data = {
        "1": {"rect": [5, 6, 70, 80], "original_path": "1.jpg"},
        "0": {"rect": [1, 2, 30, 40], "original_path": "0.jpg"},
        "2": [9, 9, 20, 20],
    }

    np.testing.assert_array_equal(
        parse_crop_rectangles(data, SOURCE), [[1, 2, 30, 40], [5, 6, 70, 80], [9, 9, 20, 20]]
    )


def test_crop_rectangle_keys_sort_as_numbers() -> None:
    data = {str(index): [index, 0, index + 1, 1] for index in range(12)}

    assert parse_crop_rectangles(data, SOURCE)[:, 0].tolist() == list(range(12))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "holds no boxes"),
        ({"1": [1, 1, 2, 2]}, "keys must be the frame indices 0 to 0; found '1'"),
        ({"0": [1, 1, 2, 2], "00": [1, 1, 2, 2]}, "keys must be the frame indices 0 to 1; found '00'"),
        ({"0": [1, 1, 2, 2], "one": [1, 1, 2, 2]}, "found 'one'"),
        ("boxes", "must be a JSON object keyed by frame index, is str"),
    ],
)
def test_malformed_crop_rectangles_are_refused(data: object, problem: str) -> None:
    with pytest.raises(PackageError) as refused:
        parse_crop_rectangles(data, SOURCE)

    assert problem in refused.value.problem


@pytest.mark.parametrize(
    "box",
    [
        [1, 2, 3],
        [1, 2, 3, 4, 5],
        [1.0, 2, 3, 4],
        [True, 2, 3, 4],
        ["1", 2, 3, 4],
        [-1, 2, 3, 4],
        [2**31, 0, 1, 1],
    ],
)
def test_a_box_that_is_not_four_non_negative_int32_values_is_refused(box: list[object]) -> None:
    with pytest.raises(PackageError, match=r"box 1 must be 4 non-negative integers \[x1, y1, x2, y2\]"):
        parse_box_list([[0, 0, 1, 1], box], SOURCE)


@pytest.mark.parametrize(
    ("box", "problem"),
    [
        ([0, 0, 160, 120], None),
        ([10, 10, 11, 11], None),
        ([0, 0, 161, 120], "[0, 0, 161, 120] is outside the 160x120 frame"),
        ([0, 0, 160, 121], "[0, 0, 160, 121] is outside the 160x120 frame"),
        ([10, 10, 10, 20], "[10, 10, 10, 20] is empty"),
        ([10, 20, 20, 19], "[10, 20, 20, 19] is empty"),
    ],
)
def test_boxes_must_be_non_empty_and_inside_the_frame(box: list[int], problem: str | None) -> None:
    boxes = np.array([[0, 0, 8, 8], box], dtype=np.int32)

    assert find_bad_box(boxes, 160, 120) == (None if problem is None else (1, problem))


def test_a_bad_box_is_refused_naming_the_file_and_the_frame() -> None:
    with pytest.raises(
        PackageError, match=r"^boxes.json: box 0 \[0, 0, 200, 10\] is outside the 160x120 frame$"
    ):
        check_boxes_inside(np.array([[0, 0, 200, 10]], np.int32), 160, 120, SOURCE)


def test_the_landmark_crop_follows_points_1_31_and_52_and_is_square() -> None:
    points = np.zeros((LANDMARK_POINTS, 2), np.float32)
    points[1] = (532.9, 300)
    points[31] = (714.2, 300)
    points[52] = (600, 210.99)

    # Truncated as the reference's float32 -> int32 cast: 532, 714, 210; height = width = 182.
    assert box_from_landmarks(points) == (532, 210, 714, 392)


def test_landmark_coordinates_truncate_toward_zero_like_the_reference() -> None:
    points = np.zeros((LANDMARK_POINTS, 2), np.float32)
    points[1] = (-3.7, 0)
    points[31] = (20.5, 0)
    points[52] = (0, -0.5)

    assert box_from_landmarks(points) == (-3, 0, 20, 23)


@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 300))
def test_landmarks_written_for_a_box_give_that_box_back(x1: int, y1: int, side: int) -> None:
    box = (x1, y1, x1 + side, y1 + side)

    assert box_from_landmarks(landmarks_for_box(box)) == box


def test_landmark_files_are_read_in_frame_number_order(tmp_path: Path) -> None:
    for frame in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9, 11):
        lines = [f"{frame} 0"] * LANDMARK_POINTS
        (tmp_path / f"{frame}.lms").write_text("\n".join(lines))
    (tmp_path / "notes.txt").write_text("ignored")

    files = landmark_files(tmp_path)

    assert [file.name for file in files] == [f"{frame}.lms" for frame in range(12)]
    assert boxes_from_landmarks(files)[:, 0].tolist() == list(range(12))


def test_a_landmark_file_allows_blank_lines_and_any_spacing(tmp_path: Path) -> None:
    path = tmp_path / "0.lms"
    path.write_text("\n".join(["1.5   2.5"] * LANDMARK_POINTS) + "\n\n")

    points = read_landmarks(path)

    assert points.shape == (LANDMARK_POINTS, 2)
    assert points[0].tolist() == [1.5, 2.5]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nan 1\n" * LANDMARK_POINTS, "holds a coordinate that is not a finite pixel position"),
        ("1e12 1\n" * LANDMARK_POINTS, "holds a coordinate that is not a finite pixel position"),
        ("1 2\n" * (LANDMARK_POINTS + 1), "must hold 110 points, holds 111"),
    ],
)
def test_a_landmark_file_with_unusable_points_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "0.lms"
    path.write_text(text)

    with pytest.raises(PackageError, match=problem):
        read_landmarks(path)


def test_a_landmark_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "0.lms"
    path.write_bytes(b"\xff\xfe\x00")

    with pytest.raises(PackageError, match="cannot be read as text"):
        read_landmarks(path)


def test_a_landmark_directory_without_lms_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"holds no \.lms landmark files"):
        landmark_files(tmp_path)


@given(JSON)
def test_any_json_as_a_box_file_is_read_or_refused_with_a_package_error(data: object) -> None:
    for parse in (parse_box_list, parse_crop_rectangles):
        try:
            boxes = parse(data, SOURCE)
        except PackageError:
            continue
        assert boxes.dtype == np.int32
        assert boxes.shape[1:] == (4,)
