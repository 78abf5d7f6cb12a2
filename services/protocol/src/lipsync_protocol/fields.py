"""Field types and checks shared by the v1, JSON and v2 codecs.

The limits here are the protocol's, documented in ``docs/protocol.md``: a model name is 1-255 UTF-8
bytes, a frame id fits the server's ``int32``, a traceparent follows W3C Trace Context.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from lipsync_protocol.errors import ProtocolError, RequestId

#: The largest frame id: the server's frame ids are proto ``int32``.
MAX_FRAME_ID = 2**31 - 1
#: A model name is at most this many UTF-8 bytes (its length is one byte in the binary protocols).
MAX_MODEL_NAME_BYTES = 255
#: A traceparent is at most this many characters (its length is one byte in v2).
MAX_TRACEPARENT_LENGTH = 255
#: Live audio is PCM16 little-endian mono at this rate, as the server requires.
SAMPLE_RATE = 16_000

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[\x21-\x7e]*)?")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16


class OutputMode(enum.StrEnum):
    """What a frame reply carries. The value is the JSON spelling; :attr:`wire` the v2 byte.

    The v2 byte equals the proto's ``lipsync.v1.OutputMode`` number, so the proxy can hand
    ``mode.wire`` to the gRPC request as it is.
    """

    FULL_FRAME = "full_frame"
    FACE_CROP = "face_crop"

    @property
    def wire(self) -> int:
        """The v2 byte and proto enum number of this mode."""
        return _MODE_TO_WIRE[self]

    @classmethod
    def from_wire(cls, value: int) -> OutputMode:
        """The mode of a v2 byte / proto number; raises KeyError for any other number."""
        return _WIRE_TO_MODE[value]


_MODE_TO_WIRE = {OutputMode.FULL_FRAME: 1, OutputMode.FACE_CROP: 2}
_WIRE_TO_MODE = {v: k for k, v in _MODE_TO_WIRE.items()}


class Bounds(NamedTuple):
    """The face box in full-frame pixels: x1, y1 inclusive, x2, y2 exclusive (as the proto's Bounds)."""

    x1: int
    y1: int
    x2: int
    y2: int


class Timings(NamedTuple):
    """Where the server spent one frame's time, in milliseconds, and how many frames shared its batch."""

    queue_ms: float
    audio_features_ms: float
    inference_ms: float
    composite_ms: float
    encode_ms: float
    total_ms: float
    batch_size: int


def safe_repr(value: object, limit: int = 40) -> str:
    """A short ASCII rendering of a client value for an error message (never raw client bytes)."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_frame_id(frame_id: int, request_id: RequestId | None, field: str = "frame_id") -> int:
    """Return ``frame_id`` when it is a valid server frame id, else raise ProtocolError."""
    if not 0 <= frame_id <= MAX_FRAME_ID:
        raise ProtocolError(f"{field} must be in [0, {MAX_FRAME_ID}], got {frame_id}", request_id=request_id)
    return frame_id


def decode_model_name(raw: bytes, request_id: RequestId | None) -> str:
    """The model name of a binary message: 1-255 bytes of valid UTF-8."""
    if not raw:
        raise ProtocolError("model name must not be empty", request_id=request_id)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("model name is not valid UTF-8", request_id=request_id) from None


def check_model_name(name: str, request_id: RequestId | None) -> str:
    """Return ``name`` when it is a valid model name (1-255 UTF-8 bytes), else raise ProtocolError."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProtocolError("model_name is not valid Unicode text", request_id=request_id) from None
    if not 0 < size <= MAX_MODEL_NAME_BYTES:
        raise ProtocolError(
            f"model_name must be 1-{MAX_MODEL_NAME_BYTES} UTF-8 bytes, got {size}", request_id=request_id
        )
    return name


def check_traceparent(value: str, request_id: RequestId | None) -> str:
    """Return ``value`` when it is a valid W3C ``traceparent`` header value, else raise ProtocolError.

    Version ``00`` is exactly 55 characters; a later version may append ``-``-separated fields, which
    are kept for the tracer to ignore, as W3C Trace Context asks. Version ``ff`` and all-zero trace or
    parent ids are invalid.
    """
    match = _TRACEPARENT.fullmatch(value)
    if (
        match is None
        or len(value) > MAX_TRACEPARENT_LENGTH
        or match[1] == "ff"
        or (match[1] == "00" and match[4] is not None)
        or match[2] == _ZERO_TRACE_ID
        or match[3] == _ZERO_PARENT_ID
    ):
        raise ProtocolError(
            "traceparent must be a W3C Trace Context value like "
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            request_id=request_id,
        )
    return value
