"""`lipsync.v1` Infer messages in protobuf wire format, and the methods that carry them, for the frame path.

A frame request is an `InferRequest` of a few fields, and what goes back to the client is mostly the
`image` of the `InferResponse`. Writing the requests and batches here, and reading the reply's fields
straight out of its bytes, skips a protobuf object per frame and a copy of each image (the image is
a view into the reply). The field numbers are those of `protos/lipsync/v1/lipsync.proto`; the tests
check every function against the generated classes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

SERVICE_NAME = "lipsync.v1.LipSync"
INFER_METHOD = f"/{SERVICE_NAME}/Infer"
INFER_BATCH_METHOD = f"/{SERVICE_NAME}/InferBatch"
STREAM_INFER_METHOD = f"/{SERVICE_NAME}/StreamInfer"

# Field tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
_TAG_MODEL_NAME = bytes(((2 << 3) | 2,))
_TAG_FRAME_ID = bytes(((3 << 3) | 0,))
# InferBatchRequest.requests and InferBatchResponse.responses are both field 1.
_TAG_BATCH_ITEM = bytes(((1 << 3) | 2,))
_BATCH_ITEM = 1

# InferResponse's fields.
_FRAME_ID = 3
_OUTPUT_MODE = 4
_IMAGE = 5
_WIDTH = 6
_HEIGHT = 7
_BOUNDS = 8
_TIMINGS = 9
_ERROR = 10

_DOUBLE = struct.Struct("<d")

Bounds = tuple[int, int, int, int]
#: queue, audio features, inference, composite, encode, total (ms), batch size: `Timings`' fields in order.
Timings = tuple[float, float, float, float, float, float, int]


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_infer_request(model_name: bytes, frame_id: int) -> bytes:
    """A serialized `InferRequest{model_name, frame_id}`; `frame_id` is in [0, 2**31)."""
    request = _TAG_MODEL_NAME + _varint(len(model_name)) + model_name
    # proto3 leaves a zero scalar out.
    return request + _TAG_FRAME_ID + _varint(frame_id) if frame_id else request


def encode_batch(requests: Sequence[bytes]) -> bytes:
    """A serialized `InferBatchRequest` of serialized `InferRequest`s, in order."""
    return b"".join(_TAG_BATCH_ITEM + _varint(len(request)) + request for request in requests)


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


_EMPTY = memoryview(b"")

# One field: number, wire type, the value of a varint (or the offset of a fixed-size value in the
# message), and the payload of a length-delimited field (empty for the other types).
_Field = tuple[int, int, int, memoryview]


def _fields(data: bytes | bytearray | memoryview) -> list[_Field]:
    """Every field of a message, in order."""
    view = memoryview(data)
    fields: list[_Field] = []
    pos = 0
    end = len(view)
    while pos < end:
        key, pos = _read_varint(view, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(view, pos)
            fields.append((field, 0, value, _EMPTY))
        elif wire_type == 2:
            size, pos = _read_varint(view, pos)
            if pos + size > end:
                raise WireError("a field runs past the end of the message")
            fields.append((field, 2, size, view[pos : pos + size]))
            pos += size
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if pos + size > end:
                raise WireError("a fixed-size field runs past the end of the message")
            fields.append((field, wire_type, pos, _EMPTY))
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    return fields


def split_batch(data: bytes | bytearray) -> list[memoryview]:
    """The serialized `InferResponse`s of a serialized `InferBatchResponse`, in order, as views."""
    return [view for field, wire_type, _, view in _fields(data) if field == _BATCH_ITEM and wire_type == 2]


def _int32(value: int) -> int:
    # int32 is sent as a 64-bit two's complement varint; parsers keep its low 32 bits.
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class InferReply(NamedTuple):
    """What the proxy forwards of one `InferResponse`. The image is a view into the reply's bytes;
    bounds and timings are read only when asked for (the v1 path never does)."""

    frame_id: int
    output_mode: int
    image: memoryview
    width: int
    height: int
    #: The item's error (gRPC status number, message) in a batch or stream; None for a frame.
    error: tuple[int, str] | None
    bounds_parts: tuple[memoryview, ...]
    timings_parts: tuple[memoryview, ...]

    @property
    def has_bounds(self) -> bool:
        return bool(self.bounds_parts)

    @property
    def has_timings(self) -> bool:
        return bool(self.timings_parts)

    def bounds(self) -> Bounds:
        """x1, y1, x2, y2 (zeros when absent)."""
        box = [0, 0, 0, 0]
        # A message field that occurs more than once is merged, as protobuf parsers do.
        for part in self.bounds_parts:
            for field, wire_type, value, _ in _fields(part):
                if 1 <= field <= 4 and wire_type == 0:
                    box[field - 1] = _int32(value)
        return (box[0], box[1], box[2], box[3])

    def timings(self) -> Timings:
        """The server's timings (zeros when absent)."""
        ms = [0.0] * 6
        batch_size = 0
        for part in self.timings_parts:
            for field, wire_type, value, _ in _fields(part):
                if 1 <= field <= 6 and wire_type == 1:
                    ms[field - 1] = _DOUBLE.unpack_from(part, value)[0]
                elif field == 7 and wire_type == 0:
                    batch_size = _int32(value)
        return (ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], batch_size)


def decode_infer_response(data: bytes | memoryview) -> InferReply:
    """The fields of a serialized `InferResponse` the proxy forwards; WireError when malformed.

    As protobuf parsers do, the last occurrence of a scalar field wins and unknown fields are skipped."""
    frame_id = output_mode = width = height = 0
    image = _EMPTY
    error: tuple[int, str] | None = None
    bounds: list[memoryview] = []
    timings: list[memoryview] = []
    for field, wire_type, value, view in _fields(data):
        if wire_type == 2:
            if field == _IMAGE:
                image = view
            elif field == _BOUNDS:
                bounds.append(view)
            elif field == _TIMINGS:
                timings.append(view)
            elif field == _ERROR:
                error = _merge_error(error, view)
        elif wire_type == 0:
            if field == _FRAME_ID:
                frame_id = _int32(value)
            elif field == _OUTPUT_MODE:
                output_mode = _int32(value)
            elif field == _WIDTH:
                width = _int32(value)
            elif field == _HEIGHT:
                height = _int32(value)
    return InferReply(frame_id, output_mode, image, width, height, error, tuple(bounds), tuple(timings))


def _merge_error(previous: tuple[int, str] | None, data: memoryview) -> tuple[int, str]:
    code, message = previous if previous is not None else (0, "")
    for field, wire_type, value, view in _fields(data):
        if field == 1 and wire_type == 0:
            code = _int32(value)
        elif field == 2 and wire_type == 2:
            message = bytes(view).decode("utf-8", "replace")
    return code, message
