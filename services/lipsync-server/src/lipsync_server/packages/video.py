"""Decoding a package's frames: a video file through OpenCV's FFmpeg backend, or a directory of images.

Frames come out as one N×H×W×3 BGR uint8 array. Decoding is bounded by what the files hold, never by
what a manifest claims, so a lying manifest cannot make the loader allocate more than the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import PackageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# The container's frame count is only a hint: trust it for one up-front allocation up to this size,
# beyond that grow as frames actually arrive.
_PREALLOCATE_MAX_BYTES = 4 << 30
_GROWTH_FRAMES = 64


def decode_video(path: Path, *, limit: int | None = None) -> NDArray[np.uint8]:
    """All frames of video file `path` (at most `limit` of them), as one N×H×W×3 BGR array."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise PackageError(path, "cannot be opened as a video (FFmpeg cannot decode it)")
        ok, first = capture.read()
        if not ok or first is None:
            raise PackageError(path, "holds no decodable video frames")
        first = _check_pixels(first, path, "frame 0")
        hint = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        capacity = _capacity(hint, first.nbytes, limit)
        pixels: NDArray[np.uint8] = np.empty((capacity, *first.shape), dtype=np.uint8)
        pixels[0] = first
        count = 1
        while limit is None or count < limit:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            frame = _check_pixels(frame, path, f"frame {count}")
            if frame.shape != first.shape:
                raise PackageError(
                    path, f"frame {count} is {_size(frame)}; earlier frames are {_size(first)}"
                )
            if count == len(pixels):
                pixels = _grown(pixels)
            pixels[count] = frame
            count += 1
        # A view: pages of the unused tail were never written, so they cost no memory.
        return pixels[:count]
    except MemoryError as exc:
        raise PackageError(path, "frames do not fit in memory") from exc
    except cv2.error as exc:
        raise PackageError(path, f"cannot be decoded: {exc}") from exc
    finally:
        capture.release()


def video_fps(path: Path) -> float | None:
    """The frame rate video file `path` declares, or None when it declares none that is usable."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else None


def list_images(directory: Path) -> list[Path]:
    """The JPEG and PNG files of `directory` in frame order (sorted by name).

    Other files are ignored. Numeric names of different lengths ('2.jpg', '10.jpg') are refused: name
    order would not be frame order, and guessing would silently shuffle a package.
    """
    try:
        images = sorted(
            entry
            for entry in directory.iterdir()
            if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file()
        )
    except OSError as exc:
        raise PackageError(directory, f"cannot be listed: {exc.strerror or exc}") from exc
    if not images:
        raise PackageError(directory, "holds no JPEG or PNG images")
    stems = [image.stem for image in images]
    if all(stem.isdigit() for stem in stems) and len({len(stem) for stem in stems}) > 1:
        raise PackageError(
            directory,
            "image names are numbers of different lengths (e.g. '2.jpg' and '10.jpg'); "
            "zero-pad them so that name order is frame order",
        )
    return images


def decode_images(images: Sequence[Path], directory: Path) -> NDArray[np.uint8]:
    """The images `images` (of `directory`, non-empty) as one N×H×W×3 BGR array; all must be one size."""
    try:
        first = _read_image(images[0])
        pixels: NDArray[np.uint8] = np.empty((len(images), *first.shape), dtype=np.uint8)
        pixels[0] = first
        for index, image in enumerate(images[1:], start=1):
            frame = _read_image(image)
            if frame.shape != first.shape:
                raise PackageError(image, f"is {_size(frame)}; {images[0].name} is {_size(first)}")
            pixels[index] = frame
    except MemoryError as exc:
        raise PackageError(directory, "frames do not fit in memory") from exc
    return pixels


def _read_image(path: Path) -> NDArray[np.uint8]:
    try:
        # IMREAD_COLOR: grey, 16-bit and alpha images all come out as 8-bit BGR.
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise PackageError(path, f"cannot be decoded as an image: {exc}") from exc
    if frame is None:
        raise PackageError(path, "cannot be decoded as an image")
    return _check_pixels(frame, path, "image")


def _check_pixels(frame: object, path: Path, what: str) -> NDArray[np.uint8]:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise PackageError(path, f"{what} is not an 8-bit colour image")
    return frame


def _capacity(hint: float, frame_bytes: int, limit: int | None) -> int:
    frames = int(hint) if math.isfinite(hint) and hint >= 1 else _GROWTH_FRAMES
    if frames * frame_bytes > _PREALLOCATE_MAX_BYTES:
        frames = _GROWTH_FRAMES
    return max(1, min(frames, limit) if limit is not None else frames)


def _grown(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """`pixels` copied into an array with room for at least as many frames again."""
    grown: NDArray[np.uint8] = np.empty((2 * len(pixels) + _GROWTH_FRAMES, *pixels.shape[1:]), np.uint8)
    grown[: len(pixels)] = pixels
    return grown


def _size(frame: NDArray[np.uint8]) -> str:
    return f"{frame.shape[1]}x{frame.shape[0]}"
