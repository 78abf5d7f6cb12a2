"""The hand-written Infer wire format against the generated protobuf classes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.wire import WireError, encode_infer_request, infer_response_image

names = st.text(min_size=1, max_size=60).map(str.encode).filter(lambda b: 0 < len(b) <= 255)
frame_ids = st.integers(min_value=0, max_value=2**31 - 1)


@given(names, frame_ids)
def test_an_encoded_request_parses_as_the_same_infer_request(name: bytes, frame_id: int) -> None:
    encoded = encode_infer_request(name, frame_id)
    parsed = lipsync_pb2.InferRequest.FromString(encoded)
    assert (parsed.model_name, parsed.frame_id) == (name.decode(), frame_id)
    assert (
        encoded == lipsync_pb2.InferRequest(model_name=name.decode(), frame_id=frame_id).SerializeToString()
    )


responses = st.builds(
    lipsync_pb2.InferResponse,
    request_id=st.text(max_size=20),
    model_name=st.text(max_size=20),
    frame_id=frame_ids,
    output_mode=st.sampled_from([0, 1, 2]),
    image=st.binary(max_size=3000),
    width=st.integers(0, 10_000),
    height=st.integers(-5, 10_000),
    bounds=st.builds(lipsync_pb2.Bounds, x1=st.integers(-(2**31), 2**31 - 1), y2=st.integers(0, 99)),
    timings=st.builds(
        lipsync_pb2.Timings, total_ms=st.floats(allow_nan=False), batch_size=st.integers(0, 64)
    ),
    error=st.builds(lipsync_pb2.Error, code=st.integers(0, 16), message=st.text(max_size=20)),
)


@given(responses)
def test_the_image_is_sliced_out_of_any_response(response: lipsync_pb2.InferResponse) -> None:
    image = infer_response_image(response.SerializeToString())
    assert isinstance(image, memoryview)
    assert bytes(image) == response.image


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_an_image_or_a_wire_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(WireError):
        infer_response_image(data)


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
        infer_response_image(data)


def test_the_last_image_field_wins_as_in_protobuf() -> None:
    data = b"\x2a\x01a" + b"\x2a\x02bc"
    assert bytes(infer_response_image(data)) == lipsync_pb2.InferResponse.FromString(data).image == b"bc"
