"""Full-frame JPEGs at the cost of the face: each base frame of a package is cached once as a JPEG in
restart intervals (jpeg_splice), and a rendered frame re-encodes only the intervals under its face box.

Caches are built on first use of each frame and live as long as the package. A package keeps caches
for at most two JPEG qualities (the server's default, and one a client asks for); other qualities are
encoded whole, so no client can make the server hold a copy of the video per quality.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
from numpy.typing import NDArray

from lipsync_server.jpeg_splice import SplicedFrame
from lipsync_server.packages.model import ModelPackage

MAX_QUALITIES_PER_PACKAGE = 2


class SplicedFrames:
    """The spliced-JPEG caches of one package's frames at one quality. Thread-safe."""

    def __init__(self, package: ModelPackage, quality: int) -> None:
        self._package = package
        self._quality = quality
        self._frames: dict[int, SplicedFrame] = {}
        self._lock = threading.Lock()

    def encode(self, frame_id: int, face: NDArray[np.uint8]) -> bytes:
        """Frame `frame_id` as JPEG with `face` (box-sized BGR) in its face box."""
        spliced = self._frames.get(frame_id)
        if spliced is None:
            x1, y1, x2, y2 = (int(v) for v in self._package.boxes[frame_id])
            built = SplicedFrame.build(self._package.frames.frame(frame_id), (x1, y1, x2, y2), self._quality)
            with self._lock:
                # Two threads may build the same frame at once; either copy is the same bytes.
                spliced = self._frames.setdefault(frame_id, built)
        return spliced.encode(face)


_caches: weakref.WeakKeyDictionary[ModelPackage, dict[int, SplicedFrames]] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def spliced_frames(package: ModelPackage, quality: int) -> SplicedFrames | None:
    """The package's cache at `quality`, or None when it already caches two other qualities."""
    with _caches_lock:
        by_quality = _caches.setdefault(package, {})
        cache = by_quality.get(quality)
        if cache is None and len(by_quality) < MAX_QUALITIES_PER_PACKAGE:
            cache = by_quality[quality] = SplicedFrames(package, quality)
        return cache
