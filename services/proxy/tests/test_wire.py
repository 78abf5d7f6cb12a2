"""The frame path's hand-written requests, batches and batch splitting against the generated protobuf
classes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.wire import (
    WireError,
    encode_batch,
    encode_infer_request,
    split_batch,
    varint,
)

names = st.text(min_size=1, max_size=60).map(str.encode).filter(lambda b: 0 < len(b) <= 255)
frame_ids = st.integers(min_value=0, max_value=2**31 - 1)
int32s = st.integers(-(2**31), 2**31 - 1)


@given(names, frame_ids)
def test_an_encoded_request_parses_as_the_same_infer_request(name: bytes, frame_id: int) -> None:
    encoded = encode_infer_request(name, frame_id)
    parsed = lipsync_pb2.InferRequest.FromString(encoded)
    assert (parsed.model_name, parsed.frame_id) == (name.decode(), frame_id)
    assert (
        encoded == lipsync_pb2.InferRequest(model_name=name.decode(), frame_id=frame_id).SerializeToString()
    )


@given(st.lists(st.tuples(names, frame_ids), max_size=20))
def test_an_encoded_batch_is_the_infer_batch_request_of_its_requests_in_order(
    items: list[tuple[bytes, int]],
) -> None:
    requests = [encode_infer_request(name, frame_id) for name, frame_id in items]
    batch = lipsync_pb2.InferBatchRequest.FromString(encode_batch(requests))
    assert [(r.model_name.encode(), r.frame_id) for r in batch.requests] == items


responses = st.builds(
    lipsync_pb2.InferResponse,
    request_id=st.text(max_size=20),
    model_name=st.text(max_size=20),
    frame_id=int32s,
    output_mode=st.sampled_from([0, 1, 2]),
    image=st.binary(max_size=3000),
    width=int32s,
    height=st.integers(-5, 10_000),
    bounds=st.none() | st.builds(lipsync_pb2.Bounds, x1=int32s, y1=int32s, x2=int32s, y2=st.integers(0, 99)),
    timings=st.none()
    | st.builds(
        lipsync_pb2.Timings,
        queue_ms=st.floats(allow_nan=False),
        inference_ms=st.floats(allow_nan=False),
        total_ms=st.floats(allow_nan=False),
        batch_size=int32s,
    ),
    error=st.none() | st.builds(lipsync_pb2.Error, code=st.integers(0, 16), message=st.text(max_size=20)),
)


@given(st.lists(responses, max_size=8), st.floats(allow_nan=False))
def test_a_batch_response_splits_into_its_responses_in_order(
    items: list[lipsync_pb2.InferResponse], total_ms: float
) -> None:
    data = lipsync_pb2.InferBatchResponse(responses=items, total_ms=total_ms).SerializeToString()
    assert [bytes(part) for part in split_batch(data)] == [item.SerializeToString() for item in items]


def field(number: int, wire_type: int, value: bytes) -> bytes:
    """One field on the wire; `value` is as written: a varint, 8 or 4 bytes, or a length-delimited payload."""
    return varint((number << 3) | wire_type) + (varint(len(value)) + value if wire_type == 2 else value)


def wrap(number: int, message: bytes) -> bytes:
    """`message` as the message field `number`."""
    return field(number, 2, message)


values_by_wire_type = {
    0: st.integers(0, 2**64 - 1).map(varint),
    1: st.binary(min_size=8, max_size=8),
    2: st.binary(max_size=20),
    5: st.binary(min_size=4, max_size=4),
}


def unknown_fields(own: dict[int, int]) -> st.SearchStrategy[bytes]:
    """Fields that a message with the fields `own` (number: wire type) does not know: other numbers,
    with keys of one byte (below 16) and of more, and its own numbers with another wire type."""
    numbers = st.integers(1, 15) | st.integers(16, 2**29 - 1)
    keys = st.tuples(numbers, st.sampled_from(sorted(values_by_wire_type)))
    one = keys.filter(lambda key: own.get(key[0]) != key[1]).flatmap(
        lambda key: values_by_wire_type[key[1]].map(lambda value: field(key[0], key[1], value))
    )
    return st.lists(one, max_size=3).map(b"".join)


@given(
    st.lists(st.tuples(unknown_fields({1: 2, 2: 1}), responses), max_size=4),
    unknown_fields({1: 2, 2: 1}),
)
def test_unknown_fields_in_a_batch_response_are_skipped(
    items: list[tuple[bytes, lipsync_pb2.InferResponse]], after: bytes
) -> None:
    data = b"".join(unknown + wrap(1, item.SerializeToString()) for unknown, item in items) + after
    assert len(lipsync_pb2.InferBatchResponse.FromString(data).responses) == len(items)
    assert [bytes(part) for part in split_batch(data)] == [item.SerializeToString() for _, item in items]


@given(st.binary(max_size=200))
def test_arbitrary_bytes_split_into_views_or_give_a_wire_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(WireError):
        assert all(isinstance(part, memoryview) for part in split_batch(data))


@pytest.mark.parametrize(
    "data",
    [
        b"\x2a\x05abc",  # the image runs past the end
        b"\x2a",  # a length is missing
        b"\x31\x00\x00",  # a fixed64 runs past the end
        b"\x0b",  # group wire types are not used by proto3
        b"\x0c",  # nor are their ends
        b"\x0e",  # 6 and 7 are not wire types
        b"\x0f",
        b"\x08" + b"\xff" * 11,  # an overlong varint
        b"\x08" + b"\xff" * 10 + b"\x01",  # one of 11 bytes that ends (10 carry 64 bits)
        b"\xff" * 11,  # an overlong key
        b"\x80",  # a key of two bytes is cut after one
        b"\xf8",  # a key of two bytes (field 31) is cut after one
        b"\x18",  # a varint is missing
        b"\x18\x80",  # a varint of two bytes is cut after one
        b"\x18\x80\x80",  # a varint of three bytes is cut after two
        b"\x2a\x80",  # a length of two bytes is cut after one
        b"\x2a\x80\x01" + bytes(127),  # a length of two bytes, one byte short
        b"\xfa\x01\x05abc",  # an unknown field with a key of two bytes runs past the end
        b"\x35\x00\x00\x00",  # a fixed32 runs past the end
    ],
)
def test_a_truncated_or_foreign_batch_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        split_batch(data)
