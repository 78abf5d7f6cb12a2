"""The seed's binary request: ``[u8 name_len][name, UTF-8][u32 frame_id, little-endian]``.

A v1 connection (one that offers no subprotocol) sends this as a binary message and gets the JPEG of
the full lip-synced frame back as a binary message, or a text error reply built by
:func:`lipsync_proxy.protocol.json_messages.error_reply`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lipsync_proxy.protocol.errors import ProtocolError
from lipsync_proxy.protocol.fields import (
    MAX_FRAME_ID,
    MAX_MODEL_NAME_BYTES,
    check_frame_id,
    decode_model_name,
)

_FRAME_ID = struct.Struct("<I")
#: The shortest valid request: a one-byte name.
MIN_REQUEST_SIZE = 1 + 1 + _FRAME_ID.size


@dataclass(frozen=True, slots=True)
class FrameRequest:
    """One lip-synced full frame of ``model_name``."""

    model_name: str
    frame_id: int


def decode_request(data: bytes) -> FrameRequest:
    """Parse a v1 binary request; raise ProtocolError unless it is exactly ``1 + name_len + 4`` bytes,
    the name is non-empty valid UTF-8 and the frame id is below 2**31 (the server's ids are int32)."""
    if len(data) < MIN_REQUEST_SIZE:
        raise ProtocolError(
            f"v1 request must be [u8 name_len][name][u32 frame_id LE], at least {MIN_REQUEST_SIZE} bytes; "
            f"got {len(data)}"
        )
    name_len = data[0]
    expected = 1 + name_len + _FRAME_ID.size
    if len(data) != expected:
        raise ProtocolError(
            f"v1 request with name_len {name_len} must be exactly {expected} bytes, got {len(data)}"
        )
    model_name = decode_model_name(data[1 : 1 + name_len], None)
    (frame_id,) = _FRAME_ID.unpack_from(data, 1 + name_len)
    return FrameRequest(model_name, check_frame_id(frame_id, None))


def encode_request(request: FrameRequest) -> bytes:
    """The wire bytes of ``request``; raises ValueError when it cannot be a valid v1 request."""
    name = request.model_name.encode("utf-8")
    if not 0 < len(name) <= MAX_MODEL_NAME_BYTES:
        raise ValueError(f"model name must be 1-{MAX_MODEL_NAME_BYTES} UTF-8 bytes, got {len(name)}")
    if not 0 <= request.frame_id <= MAX_FRAME_ID:
        raise ValueError(f"frame_id must be in [0, {MAX_FRAME_ID}], got {request.frame_id}")
    return bytes((len(name),)) + name + _FRAME_ID.pack(request.frame_id)
