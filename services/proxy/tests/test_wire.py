"""The hand-written Infer wire format against the generated protobuf classes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.wire import (
    WireError,
    decode_infer_response,
    encode_batch,
    encode_infer_request,
    split_batch,
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


def assert_same(data: bytes) -> None:
    """decode_infer_response reads `data` as the generated class does."""
    reply = decode_infer_response(data)
    expected = lipsync_pb2.InferResponse.FromString(data)
    assert isinstance(reply.image, memoryview)
    assert bytes(reply.image) == expected.image
    assert (reply.frame_id, reply.output_mode, reply.width, reply.height) == (
        expected.frame_id,
        expected.output_mode,
        expected.width,
        expected.height,
    )
    b, t = expected.bounds, expected.timings
    assert reply.has_bounds == expected.HasField("bounds")
    assert reply.bounds() == (b.x1, b.y1, b.x2, b.y2)
    assert reply.has_timings == expected.HasField("timings")
    assert reply.timings() == (
        t.queue_ms,
        t.audio_features_ms,
        t.inference_ms,
        t.composite_ms,
        t.encode_ms,
        t.total_ms,
        t.batch_size,
    )
    if expected.HasField("error"):
        assert reply.error == (expected.error.code, expected.error.message)
    else:
        assert reply.error is None


@given(responses)
def test_a_response_is_read_as_the_generated_class_reads_it(response: lipsync_pb2.InferResponse) -> None:
    assert_same(response.SerializeToString())


@given(responses, responses)
def test_two_messages_back_to_back_merge_as_in_protobuf(
    first: lipsync_pb2.InferResponse, second: lipsync_pb2.InferResponse
) -> None:
    # The last scalar wins; message fields (bounds, timings, error) merge field by field.
    assert_same(first.SerializeToString() + second.SerializeToString())


@given(st.lists(responses, max_size=8), st.floats(allow_nan=False))
def test_a_batch_response_splits_into_its_responses_in_order(
    items: list[lipsync_pb2.InferResponse], total_ms: float
) -> None:
    data = lipsync_pb2.InferBatchResponse(responses=items, total_ms=total_ms).SerializeToString()
    assert [bytes(part) for part in split_batch(data)] == [item.SerializeToString() for item in items]


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_reply_or_a_wire_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(WireError):
        reply = decode_infer_response(data)
        reply.bounds()
        reply.timings()
    with contextlib.suppress(WireError):
        split_batch(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x2a\x05abc",  # the image runs past the end
        b"\x2a",  # a length is missing
        b"\x31\x00\x00",  # a fixed64 runs past the end
        b"\x0b",  # group wire types are not used by proto3
        b"\x08" + b"\xff" * 11,  # an overlong varint
    ],
)
def test_a_truncated_or_foreign_message_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_infer_response(data)
    with pytest.raises(WireError):
        split_batch(data)


def test_the_last_image_field_wins_as_in_protobuf() -> None:
    data = b"\x2a\x01a" + b"\x2a\x02bc"
    expected = lipsync_pb2.InferResponse.FromString(data).image
    assert bytes(decode_infer_response(data).image) == expected == b"bc"
