"""Face crop boxes: the box lists of package files, and boxes computed from SyncTalk_2D landmarks.

A box is `[x1, y1, x2, y2]` in pixels, x2 and y2 exclusive; a package's boxes are an N×4 int32 array,
row i for frame i.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import PackageError

LANDMARK_POINTS = 110
LANDMARK_SUFFIX = ".lms"
# Zero-based indices of the landmark points that the SyncTalk_2D reference crops with.
_LEFT_POINT, _RIGHT_POINT, _TOP_POINT = 1, 31, 52
_INT32_LIMIT = 2**31
# Up to 9 digits: a frame number, and short enough for int() on any input.
_FRAME_NUMBER = re.compile(r"[0-9]{1,9}")


def parse_box_list(data: object, path: Path) -> NDArray[np.int32]:
    """Boxes from a parsed JSON list `[[x1, y1, x2, y2], ...]`, one per frame, read from `path`."""
    if not isinstance(data, list):
        raise PackageError(path, f"must be a JSON list of [x1, y1, x2, y2] boxes, is {type(data).__name__}")
    if not data:
        raise PackageError(path, "holds no boxes")
    return np.array([_box(item, path, index) for index, item in enumerate(data)], dtype=np.int32)


def parse_crop_rectangles(data: object, path: Path) -> NDArray[np.int32]:
    """Boxes from a parsed SyncTalk_2D `crop_rectangles.json`, read from `path`.

    The reference writes an object keyed by frame index, `{"0": {"rect": [x1, y1, x2, y2], ...}, ...}`
    (other keys of an entry are ignored). An entry may also be the bare box, and the whole file may be a
    plain list of boxes. Keys must be exactly the frame indices 0 to N-1.
    """
    if isinstance(data, list):
        return parse_box_list(data, path)
    if not isinstance(data, dict):
        raise PackageError(path, f"must be a JSON object keyed by frame index, is {type(data).__name__}")
    if not data:
        raise PackageError(path, "holds no boxes")
    keys = sorted(data, key=lambda key: int(key) if _FRAME_NUMBER.fullmatch(key) else -1)
    boxes = []
    for index, key in enumerate(keys):
        if key != str(index):
            raise PackageError(path, f"keys must be the frame indices 0 to {len(data) - 1}; found {key!r}")
        entry = data[key]
        box = entry.get("rect") if isinstance(entry, dict) else entry
        boxes.append(_box(box, path, index))
    return np.array(boxes, dtype=np.int32)


def check_boxes_inside(boxes: NDArray[np.int32], width: int, height: int, path: Path) -> None:
    """Refuse, naming `path`, the first box of `boxes` that is empty or not inside a width×height frame."""
    found = find_bad_box(boxes, width, height)
    if found is not None:
        index, problem = found
        raise PackageError(path, f"box {index} {problem}")


def find_bad_box(boxes: NDArray[np.int32], width: int, height: int) -> tuple[int, str] | None:
    """The index of the first box that is empty or not inside a width×height frame, and what is wrong."""
    x1, y1, x2, y2 = boxes.T
    bad = (x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height) | (x2 <= x1) | (y2 <= y1)
    if not bad.any():
        return None
    index = int(np.argmax(bad))
    box = [int(value) for value in boxes[index]]
    problem = "is empty" if box[2] <= box[0] or box[3] <= box[1] else f"is outside the {width}x{height} frame"
    return index, f"{box} {problem}"


def box_from_landmarks(points: NDArray[np.float32]) -> tuple[int, int, int, int]:
    """The SyncTalk_2D crop of one frame's 110 landmark points (an N×2 array of x, y).

    x from point 1 to point 31, y from point 52 down by the same width (a square), with coordinates
    truncated toward zero as the reference's float32 to int32 cast does.
    """
    xmin = int(points[_LEFT_POINT, 0])
    xmax = int(points[_RIGHT_POINT, 0])
    ymin = int(points[_TOP_POINT, 1])
    return xmin, ymin, xmax, ymin + (xmax - xmin)


def landmark_files(directory: Path) -> list[Path]:
    """The `.lms` files of `directory` ordered by frame: named 0.lms, 1.lms, ... with no gap."""
    try:
        files = sorted(entry for entry in directory.iterdir() if entry.suffix == LANDMARK_SUFFIX)
    except OSError as exc:
        raise PackageError(directory, f"cannot be listed: {exc.strerror or exc}") from exc
    if not files:
        raise PackageError(directory, "holds no .lms landmark files")
    by_frame: dict[int, Path] = {}
    for file in files:
        if _FRAME_NUMBER.fullmatch(file.stem) is None:
            raise PackageError(file, "landmark files must be named by frame number (0.lms, 1.lms, ...)")
        frame = int(file.stem)
        if frame in by_frame:
            raise PackageError(
                file, f"is a second landmark file for frame {frame} (with {by_frame[frame].name})"
            )
        by_frame[frame] = file
    for frame in range(len(by_frame)):
        if frame not in by_frame:
            raise PackageError(
                directory / f"{frame}{LANDMARK_SUFFIX}", "is missing: landmarks must cover frames 0 to N-1"
            )
    return [by_frame[frame] for frame in range(len(by_frame))]


def read_landmarks(path: Path) -> NDArray[np.float32]:
    """The 110 landmark points of `.lms` file `path`: one "x y" line per point, as a 110×2 array."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(path, f"cannot be read as text: {exc}") from exc
    points = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            x, y = (float(field) for field in fields)
        except ValueError as exc:
            raise PackageError(path, f"line {number} must be two numbers 'x y', is {line!r}") from exc
        points.append((x, y))
    if len(points) != LANDMARK_POINTS:
        raise PackageError(path, f"must hold {LANDMARK_POINTS} points, holds {len(points)}")
    array = np.array(points, dtype=np.float32)
    if not np.isfinite(array).all() or (np.abs(array) >= _INT32_LIMIT).any():
        raise PackageError(path, "holds a coordinate that is not a finite pixel position")
    return array


def boxes_from_landmarks(files: Sequence[Path]) -> NDArray[np.int32]:
    """One SyncTalk_2D crop box per landmark file of `files`, in order."""
    return np.array([box_from_landmarks(read_landmarks(file)) for file in files], dtype=np.int32)


def _box(item: object, path: Path, index: int) -> list[int]:
    if (
        not isinstance(item, list)
        or len(item) != 4
        or not all(type(value) is int and 0 <= value < _INT32_LIMIT for value in item)
    ):
        raise PackageError(path, f"box {index} must be 4 non-negative integers [x1, y1, x2, y2], is {item!r}")
    return item
