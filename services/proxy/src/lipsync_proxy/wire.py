"""The frame path's `lipsync.v1` methods, and what it writes and splits of their messages by hand.

A frame request is an `InferRequest` of two fields, written here without a protobuf object, and a batch
is its requests framed as the repeated field of an `InferBatchRequest`. A batch's reply is split here
into the serialized `InferResponse` of each frame, which the generated class then parses into a message
of its own: a frame holds its own reply, never the whole batch, however long its client takes to read
it. The field numbers are those of `protos/lipsync/v1/lipsync.proto`; the tests check every function
against the generated classes.
"""

from __future__ import annotations

from collections.abc import Sequence

SERVICE_NAME = "lipsync.v1.LipSync"
INFER_METHOD = f"/{SERVICE_NAME}/Infer"
INFER_BATCH_METHOD = f"/{SERVICE_NAME}/InferBatch"

# Wire types.
_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5

_TAG_MODEL_NAME = bytes(((2 << 3) | _LEN,))
_TAG_FRAME_ID = bytes(((3 << 3) | _VARINT,))
# InferBatchRequest.requests and InferBatchResponse.responses are both field 1.
_KEY_BATCH_ITEM = (1 << 3) | _LEN
_TAG_BATCH_ITEM = bytes((_KEY_BATCH_ITEM,))


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
