"""`lipsync.v1` Infer messages in protobuf wire format, and the methods that carry them, for the frame path.

A frame request is an `InferRequest` of a few fields, and what goes back to the client is mostly the
`image` of the `InferResponse`. Writing the requests and batches here, and reading the reply's fields
straight out of its bytes, skips a protobuf object per frame and a copy of each image (the image is
a view into the reply). The field numbers are those of `protos/lipsync/v1/lipsync.proto`; the tests
check every function against the generated classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

SERVICE_NAME = "lipsync.v1.LipSync"
INFER_METHOD = f"/{SERVICE_NAME}/Infer"
INFER_BATCH_METHOD = f"/{SERVICE_NAME}/InferBatch"
STREAM_INFER_METHOD = f"/{SERVICE_NAME}/StreamInfer"

# Wire types.
_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5


def _key(field: int, wire_type: int) -> int:
    """A field's key (tag) on the wire; the readers match whole keys, so a field number read with
    another wire type than its own is an unknown field, as in protobuf."""
    return (field << 3) | wire_type


_TAG_MODEL_NAME = bytes((_key(2, _LEN),))
_TAG_FRAME_ID = bytes((_key(3, _VARINT),))
# InferBatchRequest.requests and InferBatchResponse.responses are both field 1.
_KEY_BATCH_ITEM = _key(1, _LEN)
_TAG_BATCH_ITEM = bytes((_KEY_BATCH_ITEM,))

# InferResponse's fields.
_KEY_FRAME_ID = _key(3, _VARINT)
_KEY_OUTPUT_MODE = _key(4, _VARINT)
_KEY_IMAGE = _key(5, _LEN)
_KEY_WIDTH = _key(6, _VARINT)
_KEY_HEIGHT = _key(7, _VARINT)
_KEY_BOUNDS = _key(8, _LEN)
_KEY_TIMINGS = _key(9, _LEN)
_KEY_ERROR = _key(10, _LEN)

# Bounds' x1, y1, x2, y2; Timings' six doubles, then its batch size; Error's code and message.
_KEYS_BOUNDS = tuple(_key(field, _VARINT) for field in range(1, 5))
_KEYS_TIMINGS_MS = tuple(_key(field, _FIXED64) for field in range(1, 7))
_KEY_BATCH_SIZE = _key(7, _VARINT)
_KEY_ERROR_CODE = _key(1, _VARINT)
_KEY_ERROR_MESSAGE = _key(2, _LEN)

_DOUBLE = struct.Struct("<d")

Bounds = tuple[int, int, int, int]
#: queue, audio features, inference, composite, encode, total (ms), batch size: `Timings`' fields in order.
Timings = tuple[float, float, float, float, float, float, int]


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_infer_request(model_name: bytes, frame_id: int) -> bytes:
    """A serialized `InferRequest{model_name, frame_id}`; `frame_id` is in [0, 2**31)."""
    request = _TAG_MODEL_NAME + varint(len(model_name)) + model_name
    # proto3 leaves a zero scalar out.
    return request + _TAG_FRAME_ID + varint(frame_id) if frame_id else request


def encode_batch(requests: Sequence[bytes]) -> bytes:
    """A serialized `InferBatchRequest` of serialized `InferRequest`s, in order."""
    return b"".join(_TAG_BATCH_ITEM + varint(len(request)) + request for request in requests)


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; WireError past the end or after 10 bytes."""
    result = 0
    shift = 0
    try:
        # 10 bytes carry 64 bits; a longer varint is malformed.
        while shift < 70:
            byte = data[pos]
            pos += 1
            if byte < 0x80:
                return result | byte << shift, pos
            result |= (byte & 0x7F) << shift
            shift += 7
    except IndexError:
        raise WireError("truncated varint") from None
    raise WireError("overlong varint")


def _int32(value: int) -> int:
    # int32 is sent as a 64-bit two's complement varint; parsers keep its low 32 bits.
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _read_int32(data: memoryview, pos: int) -> tuple[int, int]:
    """`_read_varint`, for an int32 field."""
    value, pos = _read_varint(data, pos)
    return _int32(value), pos


def _skip_fixed(wire_type: int, pos: int, end: int) -> int:
    """The position after a fixed64 (1) or fixed32 (5) value at `pos`; WireError for other types."""
    if wire_type == _FIXED64:
        pos += 8
    elif wire_type == _FIXED32:
        pos += 4
    else:
        # 3 and 4 are proto2's groups; 6 and 7 are not wire types.
        raise WireError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise WireError("a fixed-size field runs past the end of the message")
    return pos


# The three readers below walk a message's fields in a loop of their own, each keeping only what it
# needs, and read the common varints in line: a key or a value of one byte (below 0x80), or of two for
# the scalars (a width, a frame id); `_read_varint` reads the rest. They run for every frame (bounds
# and timings for every v2 frame), and a function call per key and per value was most of their time:
# with calls in `_last_values`, a v2 frame's bounds and timings took 5.5 µs instead of 3.5.


def split_batch(data: bytes | bytearray) -> list[memoryview]:
    """The serialized `InferResponse`s of a serialized `InferBatchResponse`, in order, as views."""
    view = memoryview(data)
    items: list[memoryview] = []
    pos = 0
    end = len(view)
    while pos < end:
        key = view[pos]
        pos += 1
        if key > 0x7F:
            key, pos = _read_varint(view, pos - 1)
        wire_type = key & 7
        if wire_type == _VARINT:
            _, pos = _read_varint(view, pos)
        elif wire_type == _LEN:
            # The length of an item (~100 KB) is never one byte.
            size, pos = _read_varint(view, pos)
            if pos + size > end:
                raise WireError("a field runs past the end of the message")
            if key == _KEY_BATCH_ITEM:
                items.append(view[pos : pos + size])
            pos += size
        else:
            pos = _skip_fixed(wire_type, pos, end)
    return items


_EMPTY = memoryview(b"")


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
        varints, _, _ = _last_values(self.bounds_parts)
        box = [varints.get(key, 0) for key in _KEYS_BOUNDS]
        return (box[0], box[1], box[2], box[3])

    def timings(self) -> Timings:
        """The server's timings (zeros when absent)."""
        varints, doubles, _ = _last_values(self.timings_parts)
        ms = [doubles.get(key, 0.0) for key in _KEYS_TIMINGS_MS]
        return (ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], varints.get(_KEY_BATCH_SIZE, 0))


def decode_infer_response(data: bytes | memoryview) -> InferReply:
    """The fields of a serialized `InferResponse` the proxy forwards; WireError when malformed.

    As protobuf parsers do, the last occurrence of a scalar field wins and unknown fields are skipped."""
    frame_id = output_mode = width = height = 0
    image = _EMPTY
    # Message fields that occur more than once are merged (see `_last_values`). There is one part
    # each, or none: a tuple grown in place is cheaper than a list made a tuple.
    bounds: tuple[memoryview, ...] = ()
    timings: tuple[memoryview, ...] = ()
    errors: tuple[memoryview, ...] = ()
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        key = view[pos]
        pos += 1
        if key > 0x7F:
            key, pos = _read_varint(view, pos - 1)
        wire_type = key & 7
        if wire_type == _VARINT:
            # Every varint field of an InferResponse is an int32 (an enum is one too); those of one or
            # two bytes are below 2**14, and need no conversion.
            if pos < end and (value := view[pos]) < 0x80:
                pos += 1
            elif pos + 1 < end and (high := view[pos + 1]) < 0x80:
                value = (value & 0x7F) | high << 7
                pos += 2
            else:
                value, pos = _read_int32(view, pos)
            if key == _KEY_FRAME_ID:
                frame_id = value
            elif key == _KEY_OUTPUT_MODE:
                output_mode = value
            elif key == _KEY_WIDTH:
                width = value
            elif key == _KEY_HEIGHT:
                height = value
        elif wire_type == _LEN:
            if pos < end and (size := view[pos]) < 0x80:
                pos += 1
            else:
                size, pos = _read_varint(view, pos)
            start = pos
            pos += size
            if pos > end:
                raise WireError("a field runs past the end of the message")
            # Only the fields kept are sliced.
            if key == _KEY_IMAGE:
                image = view[start:pos]
            elif key == _KEY_BOUNDS:
                bounds += (view[start:pos],)
            elif key == _KEY_TIMINGS:
                timings += (view[start:pos],)
            elif key == _KEY_ERROR:
                errors += (view[start:pos],)
        else:
            pos = _skip_fixed(wire_type, pos, end)
    error = _error(errors) if errors else None
    return InferReply(frame_id, output_mode, image, width, height, error, bounds, timings)


def _error(parts: Iterable[memoryview]) -> tuple[int, str]:
    varints, _, payloads = _last_values(parts)
    message = payloads.get(_KEY_ERROR_MESSAGE)
    text = "" if message is None else bytes(message).decode("utf-8", "replace")
    return varints.get(_KEY_ERROR_CODE, 0), text


def _last_values(
    parts: Iterable[memoryview],
) -> tuple[dict[int, int], dict[int, float], dict[int, memoryview]]:
    """The last value of each field of a small message (Bounds, Timings, Error) by key: varints (read
    as int32s, which all of theirs are), doubles (all of their fixed64s are), and length-delimited.

    `parts` are the occurrences of the message, merged as protobuf does: the last value wins."""
    varints: dict[int, int] = {}
    doubles: dict[int, float] = {}
    payloads: dict[int, memoryview] = {}
    for view in parts:
        pos = 0
        end = len(view)
        while pos < end:
            key = view[pos]
            pos += 1
            if key > 0x7F:
                key, pos = _read_varint(view, pos - 1)
            wire_type = key & 7
            if wire_type == _VARINT:
                if pos < end and (value := view[pos]) < 0x80:
                    pos += 1
                elif pos + 1 < end and (high := view[pos + 1]) < 0x80:
                    value = (value & 0x7F) | high << 7
                    pos += 2
                else:
                    value, pos = _read_int32(view, pos)
                varints[key] = value
            elif wire_type == _FIXED64 and pos + 8 <= end:
                # One cut short goes on to `_skip_fixed`, which refuses it.
                doubles[key] = _DOUBLE.unpack_from(view, pos)[0]
                pos += 8
            elif wire_type == _LEN:
                size, pos = _read_varint(view, pos)
                if pos + size > end:
                    raise WireError("a field runs past the end of the message")
                payloads[key] = view[pos : pos + size]
                pos += size
            else:
                pos = _skip_fixed(wire_type, pos, end)
    return varints, doubles, payloads
