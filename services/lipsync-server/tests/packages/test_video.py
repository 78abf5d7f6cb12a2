"""Decoding frames: videos through OpenCV's FFmpeg, and directories of images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from package_factory import frames_match, synthetic_frames, write_images, write_video

from lipsync_server.errors import PackageError
from lipsync_server.packages.video import decode_images, decode_video, list_images, video_fps


def test_a_video_decodes_to_one_bgr_array_of_all_its_frames(tmp_path: Path) -> None:
    frames = synthetic_frames(12, 160, 120)
    write_video(tmp_path / "v.mp4", frames)

    pixels = decode_video(tmp_path / "v.mp4")

    assert pixels.shape == (12, 120, 160, 3)
    assert pixels.dtype == np.uint8
    assert frames_match(pixels, frames)


def test_decoding_stops_at_the_limit(tmp_path: Path) -> None:
    write_video(tmp_path / "v.mp4", synthetic_frames(12, 64, 48))

    assert len(decode_video(tmp_path / "v.mp4", limit=5)) == 5


def test_a_video_that_declares_no_frame_count_still_decodes_every_frame(tmp_path: Path) -> None:
    # A raw MJPEG stream has no container count, so decoding has to grow its buffer as frames come.
    frames = synthetic_frames(150, 32, 24)
    writer = cv2.VideoWriter(str(tmp_path / "v.mjpeg"), cv2.VideoWriter.fourcc(*"MJPG"), 25, (32, 24))
    for frame in frames:
        writer.write(frame)
    writer.release()
    assert cv2.VideoCapture(str(tmp_path / "v.mjpeg")).get(cv2.CAP_PROP_FRAME_COUNT) < 1

    assert frames_match(decode_video(tmp_path / "v.mjpeg"), frames, tolerance=10)


def test_the_declared_frame_rate_is_read(tmp_path: Path) -> None:
    write_video(tmp_path / "v.mp4", synthetic_frames(3, 32, 32), fps=30)

    assert video_fps(tmp_path / "v.mp4") == 30.0


def test_a_file_that_is_not_a_video_declares_no_frame_rate(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"nothing")

    assert video_fps(tmp_path / "v.mp4") is None


def test_a_truncated_video_is_refused(tmp_path: Path) -> None:
    write_video(tmp_path / "v.mp4", synthetic_frames(12, 64, 48))
    data = (tmp_path / "v.mp4").read_bytes()
    (tmp_path / "v.mp4").write_bytes(data[: len(data) // 2])

    with pytest.raises(PackageError, match="cannot be opened as a video"):
        decode_video(tmp_path / "v.mp4")


def test_images_are_listed_in_name_order_ignoring_other_files(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "c.jpeg", "notes.txt", "d.gif"):
        (tmp_path / name).write_bytes(b"")

    assert [image.name for image in list_images(tmp_path)] == ["a.JPG", "b.png", "c.jpeg"]


def test_numbered_images_without_zero_padding_are_refused(tmp_path: Path) -> None:
    for name in ("0.png", "1.png", "10.png"):
        (tmp_path / name).write_bytes(b"")

    with pytest.raises(PackageError, match="zero-pad them so that name order is frame order"):
        list_images(tmp_path)


def test_a_directory_without_images_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="holds no JPEG or PNG images"):
        list_images(tmp_path)


def test_png_images_decode_exactly(tmp_path: Path) -> None:
    frames = synthetic_frames(4, 40, 30)
    write_images(tmp_path, frames)

    np.testing.assert_array_equal(decode_images(list_images(tmp_path), tmp_path), frames)


def test_grey_and_alpha_images_come_out_as_three_channels(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "0.png"), np.full((30, 40), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "1.png"), np.full((30, 40, 4), 90, np.uint8))

    pixels = decode_images(list_images(tmp_path), tmp_path)

    assert pixels.shape == (2, 30, 40, 3)
    assert (pixels == 90).all()
