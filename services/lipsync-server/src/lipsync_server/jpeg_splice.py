"""Full-frame JPEGs at the cost of the face: re-encode only the restart intervals the face box touches.

A base frame is encoded once with a restart interval of R MCUs (the DRI marker). At every restart
marker the encoder byte-aligns its output and resets the DC predictors, so each interval's
entropy-coded bytes depend on that interval's pixels alone. Per output frame only the intervals under
the face box change: the sub-image they cover is composited and encoded with the same quality,
subsampling, DCT, Huffman tables and R, its intervals replace the cached ones, and the markers are
written anew (``RST(i mod 8)`` after interval i, EOI after the last). The result is byte for byte the
JPEG that encoding the whole composited frame with the same settings gives, at a fraction of the cost:
the encoder sees the face's tiles, not the frame.

Layout assumptions, checked where they are made: baseline 4:2:0 (an MCU is 16×16 pixels), R dividing
the number of MCU columns (so no interval spans two MCU rows and the touched intervals form a
rectangle), and a face box inside the frame. Encoding is OpenCV's libjpeg-turbo, the server's encoder
(``lipsync_server.jpeg``), with its accurate DCT and standard Huffman tables; never mix encoders or
DCT methods between the cached frame and the re-encoded tiles.

This module is pure: arrays and bytes in, bytes out.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

#: Pixels per MCU side in 4:2:0 (two luma blocks of 8 each way per chroma block).
MCU_SIZE = 16
#: The restart interval chosen when none is given: small enough that a face touches few pixels
#: outside its box, large enough that the markers cost ~1 % of the frame's bytes.
PREFERRED_RESTART_INTERVAL = 8

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOS = 0xDA
# Entropy-coded data stuffs every 0xFF as FF 00, so FF D0-D7 there can only be a restart marker.
_RESTART_MARKER = re.compile(rb"\xff[\xd0-\xd7]")
_RESTART_MARKERS = tuple(bytes((0xFF, 0xD0 + n)) for n in range(8))
# Markers without a length field (TEM, RST0-7, SOI, EOI) cannot occur in a header that libjpeg writes.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})

Box = tuple[int, int, int, int]


def mcu_columns(width: int) -> int:
    """MCUs per row of a `width`-pixel-wide 4:2:0 image (the last one may be partial)."""
    return -(-width // MCU_SIZE)


def mcu_rows(height: int) -> int:
    """MCU rows of a `height`-pixel-high 4:2:0 image (the last one may be partial)."""
    return -(-height // MCU_SIZE)


def restart_interval_for(width: int, preferred: int = PREFERRED_RESTART_INTERVAL) -> int:
    """The largest restart interval of at most `preferred` MCUs that divides a row of `width` pixels.

    1280 px (80 MCUs) and 1920 px (120 MCUs) both get 8."""
    if width < 1 or preferred < 1:
        raise ValueError(f"width {width} and preferred interval {preferred} must be positive")
    columns = mcu_columns(width)
    return max(r for r in range(1, min(preferred, columns) + 1) if columns % r == 0)


def encode_with_restarts(image: NDArray[np.uint8], quality: int, restart_interval: int) -> bytes:
    """Baseline 4:2:0 JPEG of an H×W×3 BGR image with a restart marker every `restart_interval` MCUs.

    This is the reference a spliced frame is byte-identical to, and the encoder of every tile."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality {quality} is outside 1..100")
    if not 1 <= restart_interval <= 0xFFFF:
        raise ValueError(f"restart interval {restart_interval} is outside 1..65535")
    params = (
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        cv2.IMWRITE_JPEG_RST_INTERVAL,
        restart_interval,
    )
    ok, buffer = cv2.imencode(".jpg", image, params)
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buffer.tobytes()


@dataclass(frozen=True)
class RestartIntervals:
    """A JPEG cut at its restart markers: the header and each interval's entropy-coded bytes."""

    #: SOI up to the end of the SOS segment (tables, frame size, DRI, scan header).
    header: bytes
    #: Interval i's bytes in raster order, without the marker that follows it.
    intervals: tuple[bytes, ...]


def header_length(jpeg: bytes) -> int:
    """The length of the header: SOI and every marker segment up to the end of SOS."""
    if not jpeg.startswith(_SOI):
        raise ValueError("not a JPEG: no SOI marker")
    pos = len(_SOI)
    while pos + 4 <= len(jpeg):
        if jpeg[pos] != 0xFF or jpeg[pos + 1] in _STANDALONE:
            raise ValueError(f"unexpected bytes {jpeg[pos : pos + 2].hex()} at {pos} in the JPEG header")
        marker = jpeg[pos + 1]
        pos += 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if marker == _SOS:
            if pos > len(jpeg):
                break
            return pos
    raise ValueError("the JPEG header ends before its SOS segment")


def split_restart_intervals(jpeg: bytes, expected: int) -> RestartIntervals:
    """Cut a baseline single-scan JPEG into its header and `expected` restart intervals.

    Raises ValueError when the stream does not end with EOI or holds another number of intervals."""
    start = header_length(jpeg)
    if not jpeg.endswith(_EOI) or len(jpeg) < start + len(_EOI):
        raise ValueError("the JPEG does not end with EOI")
    intervals = _RESTART_MARKER.split(jpeg[start : -len(_EOI)])
    if len(intervals) != expected:
        raise ValueError(f"the JPEG holds {len(intervals)} restart intervals, expected {expected}")
    return RestartIntervals(jpeg[:start], tuple(intervals))


def _marker_after(index: int, count: int) -> bytes:
    """What follows interval `index` of `count`: RST(index mod 8), or EOI after the last one."""
    return _EOI if index == count - 1 else _RESTART_MARKERS[index % 8]


@dataclass(frozen=True)
class Tiles:
    """The restart intervals a face box touches: whole MCU rows, whole intervals across.

    Pixel bounds (x2, y2 exclusive) stop at the frame's edge, where the last MCU may be partial."""

    x1: int
    y1: int
    x2: int
    y2: int
    first_row: int
    rows: int
    first_column: int
    columns: int
    #: Intervals per MCU row of the whole frame.
    per_row: int

    def global_indexes(self) -> list[int]:
        """The frame's raster indexes of the tiles, in the tile sub-image's raster order."""
        return [
            (self.first_row + row) * self.per_row + self.first_column + column
            for row in range(self.rows)
            for column in range(self.columns)
        ]


def tiles_for(width: int, height: int, box: Box, restart_interval: int) -> Tiles:
    """The tiles a face box `[x1, y1, x2, y2]` (x2, y2 exclusive) touches in a `width`×`height` frame."""
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f"box {box} is empty or not inside the {width}×{height} frame")
    columns = mcu_columns(width)
    if columns % restart_interval:
        raise ValueError(f"restart interval {restart_interval} does not divide the {columns} MCUs of a row")
    span = MCU_SIZE * restart_interval
    first_row, end_row = y1 // MCU_SIZE, -(-y2 // MCU_SIZE)
    first_column, end_column = x1 // span, -(-x2 // span)
    return Tiles(
        x1=first_column * span,
        y1=first_row * MCU_SIZE,
        x2=min(end_column * span, width),
        y2=min(end_row * MCU_SIZE, height),
        first_row=first_row,
        rows=end_row - first_row,
        first_column=first_column,
        columns=end_column - first_column,
        per_row=columns // restart_interval,
    )


class SplicedFrame:
    """One base frame, cached as a JPEG in restart intervals, whose face box can be redrawn cheaply.

    Holds the JPEG's bytes once (as the runs between the tiles) and the base pixels of the tiles only,
    not the decoded frame. :meth:`encode` is safe to call from several threads at once.
    """

    def __init__(self, frame: NDArray[np.uint8], box: Box, quality: int, restart_interval: int) -> None:
        """Encode `frame` (H×W×3 BGR) once; `box` is where faces will go. Prefer :meth:`build`."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"a frame must be H×W×3 uint8, got {frame.shape} {frame.dtype}")
        height, width = frame.shape[:2]
        self.width, self.height = width, height
        self.box = box
        self.quality = quality
        self.restart_interval = restart_interval
        self.tiles = tiles_for(width, height, box, restart_interval)
        total = self.tiles.per_row * mcu_rows(height)
        base = split_restart_intervals(encode_with_restarts(frame, quality, restart_interval), total)
        self._touched = self.tiles.global_indexes()
        self._runs = _runs_between(base, self._touched)
        t = self.tiles
        self._patch: NDArray[np.uint8] = np.ascontiguousarray(frame[t.y1 : t.y2, t.x1 : t.x2])
        self._patch.flags.writeable = False

    @classmethod
    def build(
        cls, frame: NDArray[np.uint8], box: Box, quality: int, restart_interval: int | None = None
    ) -> SplicedFrame:
        """Cache `frame` for faces in `box`, with R from :func:`restart_interval_for` unless given."""
        interval = restart_interval_for(frame.shape[1]) if restart_interval is None else restart_interval
        return cls(frame, box, quality, interval)

    @property
    def nbytes(self) -> int:
        """Memory held for this frame: the JPEG's bytes and the tiles' base pixels."""
        return sum(len(run) for run in self._runs) + self._patch.nbytes

    def base_jpeg(self) -> bytes:
        """The unmodified base frame as this cache encodes it."""
        return self._patch_jpeg(self._patch)

    def encode(self, face: NDArray[np.uint8]) -> bytes:
        """The whole frame's JPEG with `face` (box-sized H×W×3 BGR) in the box: byte-identical to
        :func:`encode_with_restarts` of the composited frame with this cache's quality and interval."""
        x1, y1, x2, y2 = self.box
        if face.shape != (y2 - y1, x2 - x1, 3) or face.dtype != np.uint8:
            raise ValueError(f"the face must be {y2 - y1}×{x2 - x1}×3 uint8, got {face.shape} {face.dtype}")
        patch = self._patch.copy()
        patch[y1 - self.tiles.y1 : y2 - self.tiles.y1, x1 - self.tiles.x1 : x2 - self.tiles.x1] = face
        return self._patch_jpeg(patch)

    def _patch_jpeg(self, patch: NDArray[np.uint8]) -> bytes:
        encoded = encode_with_restarts(patch, self.quality, self.restart_interval)
        tiles = split_restart_intervals(encoded, len(self._touched)).intervals
        runs = self._runs
        parts = [runs[0]]
        for tile, run in zip(tiles, runs[1:], strict=True):
            parts += (tile, run)
        return b"".join(parts)


def _runs_between(base: RestartIntervals, touched: Sequence[int]) -> tuple[bytes, ...]:
    """The fixed bytes around the touched intervals, so a frame is `runs[0] + t0 + runs[1] + t1 + ...`.

    runs[0] is the header and every interval (with its marker) before the first touched one; each
    later run starts with the marker after a touched interval and holds the untouched ones up to the
    next touched one (or to EOI)."""
    count = len(base.intervals)
    bounds = [-1, *touched, count]
    runs = []
    for before, after in itertools.pairwise(bounds):
        parts = [base.header] if before < 0 else [_marker_after(before, count)]
        for index in range(before + 1, after):
            parts += (base.intervals[index], _marker_after(index, count))
        runs.append(b"".join(parts))
    return tuple(runs)
