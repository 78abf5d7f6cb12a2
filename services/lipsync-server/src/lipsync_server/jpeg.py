"""JPEG encoding of BGR frames (libjpeg-turbo inside OpenCV; it releases the GIL while encoding)."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import InvalidArgumentError


def encode_jpeg(image: NDArray[np.uint8], quality: int) -> bytes:
    """Baseline 4:2:0 JPEG of an H×W×3 BGR image."""
    if not 1 <= quality <= 100:
        raise InvalidArgumentError(f"jpeg_quality {quality} is outside 1..100")
    ok, buffer = cv2.imencode(".jpg", image, (cv2.IMWRITE_JPEG_QUALITY, quality))
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for an image of shape {image.shape}")
    return bytes(buffer)


def decode_jpeg(data: bytes) -> NDArray[np.uint8]:
    """Decode a JPEG to BGR; for tests and tools, not the per-frame path."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidArgumentError("not a decodable JPEG")
    return np.asarray(image, dtype=np.uint8)
