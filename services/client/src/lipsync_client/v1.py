"""The client's side of the seed's binary messages: requests written, the code layout's replies read.

The proxy's side, ``lipsync_proxy.protocol.v1``, describes both layouts and holds the request classes,
the proxy's decoder and its reply writers; this module offers all of that too, so that a client imports
one module, and adds :func:`encode_request`, :func:`decode_crop_reply` and :func:`decode_video_frame`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lipsync_proxy.protocol.errors import ProtocolError
from lipsync_proxy.protocol.fields import MAX_FRAME_ID, MAX_MODEL_NAME_BYTES
from lipsync_proxy.protocol.v1 import *  # noqa: F403
from lipsync_proxy.protocol.v1 import (
    CROP_HEAD,
    CROP_REPLY,
    FRAME_ID,
    U32,
    VIDEO_FRAME,
    VIDEO_HEAD,
    CropRequest,
    V1Request,
)


@dataclass(frozen=True, slots=True)
class CropReply:
    """The code layout's reply: a face crop JPEG, its bounds and the proxy's processing time."""

    frame_id: int
    processing_ms: int
    image: bytes
    bounds: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """The code layout's binary answer to ``get_video_frame`` after ``switch_to_binary``."""

    frame_id: int
    video_type: str
    image: bytes


def encode_request(request: V1Request) -> bytes:
    """The wire bytes of ``request`` in its layout; raises ValueError when it cannot be a valid one."""
    name = request.model_name.encode("utf-8")
    if not 0 < len(name) <= MAX_MODEL_NAME_BYTES:
        raise ValueError(f"model name must be 1-{MAX_MODEL_NAME_BYTES} UTF-8 bytes, got {len(name)}")
    if not 0 <= request.frame_id <= MAX_FRAME_ID:
        raise ValueError(f"frame_id must be in [0, {MAX_FRAME_ID}], got {request.frame_id}")
    if isinstance(request, CropRequest):
        return (
            U32.pack(len(name))
            + name
            + struct.pack("<II", request.frame_id, len(request.audio))
            + request.audio
        )
    return bytes((len(name),)) + name + FRAME_ID.pack(request.frame_id)


def decode_crop_reply(data: bytes) -> CropReply:
    """Parse the code layout's reply (what the seed's page reads); raise ProtocolError if malformed."""
    if len(data) < CROP_HEAD.size + U32.size or data[0] != CROP_REPLY:
        raise ProtocolError(f"a crop reply starts with byte {CROP_REPLY} and has at least 17 bytes")
    _, frame_id, processing_ms, image_len = CROP_HEAD.unpack_from(data)
    bounds_at = CROP_HEAD.size + image_len
    if len(data) < bounds_at + U32.size:
        raise ProtocolError(f"a crop reply with image_len {image_len} is cut short at {len(data)} bytes")
    (bounds_bytes,) = U32.unpack_from(data, bounds_at)
    if bounds_bytes % 4 or len(data) != bounds_at + U32.size + bounds_bytes:
        raise ProtocolError(f"a crop reply's bounds_bytes {bounds_bytes} does not match its length")
    bounds = struct.unpack_from(f"<{bounds_bytes // 4}f", data, bounds_at + U32.size)
    return CropReply(frame_id, processing_ms, bytes(data[CROP_HEAD.size : bounds_at]), bounds)


def decode_video_frame(data: bytes) -> VideoFrame:
    """Parse the binary ``get_video_frame`` answer; raise ProtocolError if malformed."""
    if len(data) < VIDEO_HEAD.size or data[0] != VIDEO_FRAME:
        raise ProtocolError(f"a binary video frame starts with byte {VIDEO_FRAME} and has at least 6 bytes")
    _, frame_id, kind_len = VIDEO_HEAD.unpack_from(data)
    image_at = VIDEO_HEAD.size + kind_len + U32.size
    if len(data) < image_at:
        raise ProtocolError("a binary video frame is cut short in its video_type")
    try:
        video_type = bytes(data[VIDEO_HEAD.size : VIDEO_HEAD.size + kind_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("a binary video frame's video_type is not UTF-8") from None
    (image_len,) = U32.unpack_from(data, image_at - U32.size)
    if len(data) != image_at + image_len:
        raise ProtocolError(f"a binary video frame's data_len {image_len} does not match its length")
    return VideoFrame(frame_id, video_type, bytes(data[image_at:]))
