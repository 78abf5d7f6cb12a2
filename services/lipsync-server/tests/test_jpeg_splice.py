from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from lipsync_server.jpeg_splice import (
    Box,
    SplicedFrame,
    encode_with_restarts,
    header_length,
    restart_interval_for,
    split_restart_intervals,
    tiles_for,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@cache
def base_frame(width: int, height: int) -> NDArray[np.uint8]:
    """A frame with gradients, texture and hard edges, so the entropy data holds stuffed FF bytes."""
    rng = np.random.default_rng(width * 10_000 + height)
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], axis=-1)
    frame = (frame + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)
    cv2.rectangle(frame, (width // 5, height // 4), (width // 3, height // 2), (250, 250, 250), -1)
    cv2.circle(frame, (width * 2 // 3, height // 2), min(width, height) // 5, (10, 40, 200), 3)
    return frame


def face_for(box: Box, seed: int) -> NDArray[np.uint8]:
    """A smooth face-sized image unlike the base frame under it."""
    x1, y1, x2, y2 = box
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (y2 - y1, x2 - x1, 3), dtype=np.uint8)
    return np.asarray(cv2.GaussianBlur(noise, (5, 5), 0), dtype=np.uint8)


def composited(frame: NDArray[np.uint8], box: Box, face: NDArray[np.uint8]) -> NDArray[np.uint8]:
    x1, y1, x2, y2 = box
    out = frame.copy()
    out[y1:y2, x1:x2] = face
    return out


@cache
def spliced_and_reference(
    width: int, height: int, box: Box, restart_interval: int | None, quality: int = 85
) -> tuple[bytes, bytes]:
    """The spliced frame, and the whole composited frame encoded with the same settings."""
    frame = base_frame(width, height)
    cached = SplicedFrame.build(frame, box, quality, restart_interval)
    face = face_for(box, seed=sum(box))
    reference = encode_with_restarts(composited(frame, box, face), quality, cached.restart_interval)
    return cached.encode(face), reference


EDGE_CASES = [
    pytest.param(1280, 720, (550, 200, 730, 380), None, id="720p-180px-face"),
    pytest.param(1280, 720, (460, 120, 820, 480), None, id="720p-360px-face"),
    pytest.param(1280, 720, (0, 0, 1, 1), None, id="720p-top-left-pixel"),
    pytest.param(1280, 720, (1279, 719, 1280, 720), None, id="720p-bottom-right-pixel"),
    pytest.param(1280, 720, (1279, 0, 1280, 1), None, id="720p-top-right-pixel"),
    pytest.param(1280, 720, (0, 719, 1, 720), None, id="720p-bottom-left-pixel"),
    pytest.param(1280, 720, (0, 0, 1280, 720), None, id="720p-full-frame"),
    pytest.param(1280, 720, (127, 15, 129, 17), None, id="720p-straddling-an-interval-corner"),
    pytest.param(1280, 720, (128, 16, 256, 32), None, id="720p-exactly-one-interval"),
    pytest.param(1280, 720, (0, 700, 1280, 720), None, id="720p-bottom-strip"),
    pytest.param(1280, 720, (1270, 0, 1280, 720), None, id="720p-right-edge-column"),
    pytest.param(1280, 720, (550, 200, 730, 380), 1, id="720p-R1"),
    pytest.param(1280, 720, (550, 200, 730, 380), 5, id="720p-R5"),
    pytest.param(1280, 720, (550, 200, 730, 380), 16, id="720p-R16"),
    pytest.param(1280, 720, (550, 200, 730, 380), 80, id="720p-R80-whole-rows"),
    pytest.param(1280, 720, (1279, 719, 1280, 720), 80, id="720p-R80-last-pixel"),
    pytest.param(1920, 1080, (800, 300, 1100, 700), None, id="1080p-face"),
    pytest.param(1920, 1080, (900, 1070, 1000, 1080), None, id="1080p-partial-last-mcu-row"),
    pytest.param(1920, 1080, (1919, 1079, 1920, 1080), None, id="1080p-last-pixel"),
    pytest.param(1920, 1080, (0, 0, 1920, 1080), None, id="1080p-full-frame"),
    pytest.param(1000, 600, (990, 590, 1000, 600), None, id="partial-last-mcu-column-and-row"),
    pytest.param(1000, 600, (300, 100, 500, 300), 3, id="odd-mcu-count-R3"),
]


@pytest.mark.parametrize(("width", "height", "box", "restart_interval"), EDGE_CASES)
def test_a_spliced_frame_is_byte_identical_to_encoding_the_composited_frame(
    width: int, height: int, box: Box, restart_interval: int | None
) -> None:
    spliced, reference = spliced_and_reference(width, height, box, restart_interval)
    assert spliced == reference


@pytest.mark.parametrize("quality", [30, 75, 95, 100])
def test_every_quality_splices_byte_identically(quality: int) -> None:
    spliced, reference = spliced_and_reference(1280, 720, (550, 200, 730, 380), None, quality)
    assert spliced == reference


@given(
    data=st.data(),
    restart_interval=st.sampled_from([1, 5, 25]),
    quality=st.sampled_from([50, 85]),
)
@settings(max_examples=40, deadline=None)
def test_any_box_in_a_frame_with_a_partial_mcu_row_splices_byte_identically(
    data: st.DataObject, restart_interval: int, quality: int
) -> None:
    width, height = 400, 248  # 25 MCU columns; 15.5 MCU rows
    x1 = data.draw(st.integers(0, width - 1))
    y1 = data.draw(st.integers(0, height - 1))
    box = (x1, y1, data.draw(st.integers(x1 + 1, width)), data.draw(st.integers(y1 + 1, height)))
    spliced, reference = spliced_and_reference(width, height, box, restart_interval, quality)
    assert spliced == reference


def test_the_base_frame_jpeg_is_the_whole_frame_encoded_with_restarts() -> None:
    frame = base_frame(1280, 720)
    cached = SplicedFrame.build(frame, (550, 200, 730, 380), 85)
    assert cached.base_jpeg() == encode_with_restarts(frame, 85, 8)


def test_one_cache_encodes_many_faces_and_each_matches_its_reference() -> None:
    frame, box = base_frame(1280, 720), (550, 200, 730, 380)
    cached = SplicedFrame.build(frame, box, 85)
    for seed in range(5):
        face = face_for(box, seed)
        assert cached.encode(face) == encode_with_restarts(composited(frame, box, face), 85, 8)


@pytest.fixture(scope="module")
def djpeg() -> str:
    """Debian's libjpeg-turbo-progs djpeg; missing, it skips here and fails in CI (CI=true)."""
    path = shutil.which("djpeg")
    if path is None:
        reason = "djpeg is not installed (apt-get install libjpeg-turbo-progs)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def strict_decode_problems(djpeg: str, jpeg: bytes) -> str:
    """What `djpeg -strict` says about a JPEG: empty when it decodes with no warning."""
    result = subprocess.run(
        [djpeg, "-strict"], input=jpeg, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    status = f" (exit {result.returncode})" if result.returncode else ""
    return result.stderr.decode(errors="replace") + status


@pytest.mark.parametrize(("width", "height", "box", "restart_interval"), EDGE_CASES)
def test_a_spliced_frame_decodes_without_a_warning_in_djpeg_strict(
    djpeg: str, width: int, height: int, box: Box, restart_interval: int | None
) -> None:
    spliced, _ = spliced_and_reference(width, height, box, restart_interval)
    assert strict_decode_problems(djpeg, spliced) == ""


def test_djpeg_strict_refuses_a_restart_marker_out_of_sequence(djpeg: str) -> None:
    spliced, _ = spliced_and_reference(1280, 720, (550, 200, 730, 380), None)
    at = spliced.index(b"\xff\xd3")
    renumbered = spliced[:at] + b"\xff\xd5" + spliced[at + 2 :]
    assert "RST3" in strict_decode_problems(djpeg, renumbered)


def test_opencv_decodes_the_spliced_frame_with_the_face_in_its_box() -> None:
    width, height, box = 1280, 720, (550, 200, 730, 380)
    spliced, _ = spliced_and_reference(width, height, box, None)
    decoded = np.asarray(cv2.imdecode(np.frombuffer(spliced, np.uint8), cv2.IMREAD_COLOR), dtype=int)
    base = base_frame(width, height).astype(int)
    face = face_for(box, seed=sum(box)).astype(int)
    x1, y1, x2, y2 = box
    in_box = decoded[y1:y2, x1:x2]
    assert decoded.shape == (height, width, 3)
    assert np.abs(in_box - face).mean() * 3 < np.abs(in_box - base[y1:y2, x1:x2]).mean()
    outside = np.ones((height, width), bool)
    outside[y1:y2, x1:x2] = False
    assert np.abs(decoded - base)[outside].mean() < 12, "JPEG loss on a noisy frame, nothing more"


def test_the_cache_holds_far_less_than_the_decoded_frame() -> None:
    frame = base_frame(1280, 720)
    cached = SplicedFrame.build(frame, (550, 200, 730, 380), 85)
    assert cached.nbytes < frame.nbytes / 4


@pytest.mark.parametrize(("width", "expected"), [(1280, 8), (1920, 8), (1000, 7), (16, 1), (400, 5)])
def test_the_restart_interval_divides_the_mcus_of_a_row(width: int, expected: int) -> None:
    assert restart_interval_for(width) == expected


def test_the_tiles_of_a_face_are_whole_intervals_of_whole_mcu_rows() -> None:
    tiles = tiles_for(1280, 720, (550, 200, 730, 380), 8)
    assert (tiles.x1, tiles.y1, tiles.x2, tiles.y2) == (512, 192, 768, 384)
    assert (tiles.rows, tiles.columns, tiles.per_row) == (12, 2, 10)
    assert tiles.global_indexes()[:3] == [124, 125, 134]


def test_tiles_stop_at_the_frame_edge_where_the_last_mcu_is_partial() -> None:
    tiles = tiles_for(1920, 1080, (900, 1075, 1000, 1080), 8)
    assert (tiles.y1, tiles.y2, tiles.rows) == (1072, 1080, 1)


@pytest.mark.parametrize(
    "box", [(0, 0, 0, 10), (10, 10, 5, 20), (-1, 0, 10, 10), (0, 0, 1281, 10), (0, 700, 10, 721)]
)
def test_a_box_that_is_empty_or_outside_the_frame_is_refused(box: Box) -> None:
    with pytest.raises(ValueError, match="not inside"):
        SplicedFrame.build(base_frame(1280, 720), box, 85)


def test_a_restart_interval_that_does_not_divide_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match="does not divide the 80 MCUs"):
        SplicedFrame.build(base_frame(1280, 720), (550, 200, 730, 380), 85, restart_interval=3)


def test_a_face_of_another_size_is_refused() -> None:
    cached = SplicedFrame.build(base_frame(1280, 720), (550, 200, 730, 380), 85)
    with pytest.raises(ValueError, match="180×180×3"):
        cached.encode(np.zeros((180, 181, 3), np.uint8))


def test_a_jpeg_without_restart_markers_is_not_split_into_intervals() -> None:
    ok, plain = cv2.imencode(".jpg", base_frame(1280, 720), (cv2.IMWRITE_JPEG_QUALITY, 85))
    assert ok
    with pytest.raises(ValueError, match="holds 1 restart intervals, expected 450"):
        split_restart_intervals(plain.tobytes(), 450)


def test_a_truncated_jpeg_is_refused() -> None:
    jpeg = encode_with_restarts(base_frame(400, 248), 85, 5)
    with pytest.raises(ValueError, match="EOI"):
        split_restart_intervals(jpeg[:-2], 80)
    with pytest.raises(ValueError, match="before its SOS"):
        header_length(jpeg[:100])
    with pytest.raises(ValueError, match="no SOI"):
        header_length(b"GIF89a")


def test_the_intervals_rejoined_with_their_markers_are_the_jpeg() -> None:
    jpeg = encode_with_restarts(base_frame(400, 248), 85, 5)
    parts = split_restart_intervals(jpeg, 5 * 16)
    markers = [bytes((0xFF, 0xD0 + i % 8)) for i in range(len(parts.intervals) - 1)] + [b"\xff\xd9"]
    rejoined = parts.header + b"".join(i + m for i, m in zip(parts.intervals, markers, strict=True))
    assert rejoined == jpeg
