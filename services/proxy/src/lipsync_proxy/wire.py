"""`lipsync.v1` Infer messages in protobuf wire format, for the v1 hot path.

A v1 request becomes an `InferRequest` with two fields, and only the `image` of the `InferResponse`
goes back to the client. Writing those bytes and slicing the image out of the reply directly skips a
protobuf object per frame and a copy of the image; the field numbers are those of
`protos/lipsync/v1/lipsync.proto` (tests check the output against the generated classes).
"""

from __future__ import annotations

# Field tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
_TAG_MODEL_NAME = bytes(((2 << 3) | 2,))
_TAG_FRAME_ID = bytes(((3 << 3) | 0,))
_IMAGE_FIELD = 5


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


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
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


def infer_response_image(data: bytes) -> memoryview:
    """The `image` field of a serialized `InferResponse`, without copying; empty when it has none.

    As protobuf parsers do, the last occurrence of the field wins."""
    view = memoryview(data)
    image = view[0:0]
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise WireError("a field runs past the end of the message")
            if field == _IMAGE_FIELD:
                image = view[pos : pos + size]
            pos += size
        elif wire_type == 0:
            _, pos = _read_varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    if pos != end:
        raise WireError("a fixed-size field runs past the end of the message")
    return image
