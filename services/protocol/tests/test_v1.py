from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID
from lipsync_protocol.v1 import FrameRequest, decode_request, encode_request

FUZZ = settings(max_examples=1000, derandomize=True, database=None, deadline=None)

model_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60).filter(
    lambda name: len(name.encode("utf-8")) <= 255
)
frame_requests = st.builds(FrameRequest, model_names, st.integers(0, MAX_FRAME_ID))


def test_the_seed_vector_for_sanders_frame_50_is_exact() -> None:
    data = bytes.fromhex("07 73 61 6e 64 65 72 73 32 00 00 00")

    assert encode_request(FrameRequest("sanders", 50)) == data
    assert decode_request(data) == FrameRequest("sanders", 50)


def test_frame_ids_are_little_endian() -> None:
    assert decode_request(bytes.fromhex("01 61 01 02 03 04")) == FrameRequest("a", 0x04030201)


def test_a_utf8_name_is_counted_in_bytes() -> None:
    data = encode_request(FrameRequest("mañana", 1))

    assert data[0] == len("mañana".encode()) == 7
    assert decode_request(data).model_name == "mañana"


def test_the_largest_int32_frame_id_is_accepted() -> None:
    assert decode_request(b"\x01a\xff\xff\xff\x7f").frame_id == 2**31 - 1


def test_a_frame_id_beyond_int32_is_an_invalid_argument() -> None:
    with pytest.raises(ProtocolError, match="frame_id") as caught:
        decode_request(b"\x01a\x00\x00\x00\x80")

    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.request_id is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "at least 6 bytes"),
        (b"\x07sanders2\x00\x00", "exactly 12 bytes"),
        (b"\x07sanders2\x00\x00\x00\x00", "exactly 12 bytes"),
        (b"\x00\x32\x00\x00\x00", "at least 6 bytes"),
        (b"\x00\x32\x00\x00\x00\x00", "exactly 5 bytes"),
        (b"\x02\xc3\x28\x32\x00\x00\x00", "UTF-8"),
    ],
)
def test_a_malformed_request_is_refused_with_a_clear_message(data: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode_request(data)


@pytest.mark.parametrize("request_", [FrameRequest("", 1), FrameRequest("x" * 256, 1), FrameRequest("a", -1)])
def test_a_request_the_wire_cannot_carry_is_not_encoded(request_: FrameRequest) -> None:
    with pytest.raises(ValueError, match="must be"):
        encode_request(request_)


@FUZZ
@given(frame_requests)
def test_any_valid_request_encodes_and_decodes_to_itself(request_: FrameRequest) -> None:
    assert decode_request(encode_request(request_)) == request_


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_request_or_a_protocol_error(data: bytes) -> None:
    try:
        outcome: FrameRequest | ProtocolError = decode_request(data)
    except ProtocolError as error:
        outcome = error
    if isinstance(outcome, ProtocolError):
        assert outcome.code == "INVALID_ARGUMENT"
    else:
        assert encode_request(outcome) == data


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(st.binary(max_size=260), st.integers(-2, 2), st.binary(min_size=4, max_size=4))
def test_a_message_is_accepted_exactly_when_every_rule_holds(name: bytes, skew: int, frame_id: bytes) -> None:
    name_len = min(max(len(name) + skew, 0), 255)
    valid = (
        len(name) == name_len > 0 and _is_utf8(name) and int.from_bytes(frame_id, "little") <= MAX_FRAME_ID
    )
    data = bytes((name_len,)) + name + frame_id

    try:
        decode_request(data)
    except ProtocolError:
        assert not valid
    else:
        assert valid
