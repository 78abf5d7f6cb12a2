"""The seed code's binary layout (what its realtime page speaks), beside the README's, byte by byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsync_protocol import json_messages as jm
from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID
from lipsync_protocol.v1 import (
    CropReply,
    CropRequest,
    FrameRequest,
    VideoFrame,
    decode_crop_reply,
    decode_request,
    decode_video_frame,
    encode_crop_reply,
    encode_request,
    encode_video_frame,
)

FUZZ = settings(max_examples=500, derandomize=True, database=None, deadline=None)

model_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60).filter(
    lambda name: len(name.encode("utf-8")) <= 255
)
crop_requests = st.builds(CropRequest, model_names, st.integers(0, MAX_FRAME_ID), st.binary(max_size=64))


def code_request(name: bytes, frame_id: int, audio: bytes) -> bytes:
    """The request as the seed's page builds it: [u32 name_len][name][u32 frame_id][u32 audio_len][audio]."""
    return struct.pack("<I", len(name)) + name + struct.pack("<II", frame_id, len(audio)) + audio


def test_the_seed_pages_request_for_sanders_frame_50_with_its_audio_is_a_crop_request() -> None:
    audio = bytes(range(256)) * 120  # 30,720 bytes, as the page sends
    data = code_request(b"sanders", 50, audio)

    assert len(data) == 30_739
    assert decode_request(data) == CropRequest("sanders", 50, audio)
    assert encode_request(CropRequest("sanders", 50, audio)) == data


def test_the_message_the_readme_decoder_refused_for_its_length_is_now_read() -> None:
    # "v1 request with name_len 4 must be exactly 9 bytes, got 30736" before the code layout was known.
    data = code_request(b"demo", 7, bytes(30_720))

    assert len(data) == 30_736
    assert decode_request(data) == CropRequest("demo", 7, bytes(30_720))


def test_a_readme_request_whose_name_starts_with_nul_bytes_stays_a_readme_request() -> None:
    data = b"\x03\x00\x00\x00" + struct.pack("<I", 9)

    assert decode_request(data) == FrameRequest("\0\0\0", 9)


def test_the_two_layouts_of_one_frame_differ_in_their_first_four_bytes() -> None:
    readme = encode_request(FrameRequest("demo", 5))
    code = encode_request(CropRequest("demo", 5))

    assert readme == b"\x04demo\x05\x00\x00\x00"
    assert code == b"\x04\x00\x00\x00demo\x05\x00\x00\x00\x00\x00\x00\x00"
    assert decode_request(code) == CropRequest("demo", 5, b"")


def test_only_the_seed_pages_window_lengths_have_a_known_audio_format() -> None:
    assert CropRequest("m", 0, bytes(30_720)).sample_rate == 24_000
    assert CropRequest("m", 0, bytes(20_480)).sample_rate == 16_000
    assert CropRequest("m", 0, bytes(16_384)).sample_rate is None
    assert CropRequest("m", 0, b"").sample_rate is None


def test_the_frames_instant_is_the_middle_of_its_own_chunk_the_ninth_of_sixteen() -> None:
    assert CropRequest("m", 0, bytes(30_720)).center_sample == 8 * 960 + 480
    assert CropRequest("m", 0, bytes(20_480)).center_sample == 8 * 640 + 320


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x04\x00\x00\x00demo\x05\x00\x00\x00\x00\x00\x00", "at least 16 bytes"),
        (code_request(b"demo", 5, b"ab")[:-1], "exactly 18 bytes, got 17"),
        (code_request(b"demo", 5, b"ab") + b"x", "exactly 18 bytes, got 19"),
        (code_request(b"", 5, bytes(20)), "must not be empty"),
        (code_request(b"\xc3\x28", 5, b""), "UTF-8"),
        (code_request(b"demo", 2**31, b""), "frame_id"),
    ],
)
def test_a_malformed_code_layout_request_is_refused_with_a_clear_message(data: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as caught:
        decode_request(data)

    assert caught.value.code == "INVALID_ARGUMENT"


def test_the_crop_reply_is_the_seed_pages_layout_byte_by_byte() -> None:
    data = encode_crop_reply(50, 16.4, b"\xff\xd8\xff\xd9", (540.0, 180.0, 720.0, 360.0))

    assert data[0] == 1
    assert struct.unpack_from("<III", data, 1) == (50, 16, 4)
    assert data[13:17] == b"\xff\xd8\xff\xd9"
    assert struct.unpack_from("<I4f", data, 17) == (16, 540.0, 180.0, 720.0, 360.0)
    assert len(data) == 17 + 4 + 16
    assert decode_crop_reply(data) == CropReply(50, 16, b"\xff\xd8\xff\xd9", (540.0, 180.0, 720.0, 360.0))


def test_a_crop_reply_without_bounds_says_zero_bounds_bytes() -> None:
    data = encode_crop_reply(1, float("nan"), b"jpeg", ())

    assert data[-4:] == bytes(4)
    assert decode_crop_reply(data) == CropReply(1, 0, b"jpeg", ())


def test_the_binary_video_frame_is_the_seed_pages_layout_byte_by_byte() -> None:
    data = encode_video_frame(3, "full_body", b"\xff\xd8\xff\xd9")

    assert data == b"\x02\x03\x00\x00\x00\x09full_body\x04\x00\x00\x00\xff\xd8\xff\xd9"
    assert decode_video_frame(data) == VideoFrame(3, "full_body", b"\xff\xd8\xff\xd9")


@pytest.mark.parametrize(
    "data", [b"", b"\x01", b"\x02" + bytes(20), encode_crop_reply(1, 1, b"x", (1.0,))[:-1]]
)
def test_malformed_replies_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_crop_reply(data)
    with pytest.raises(ProtocolError):
        decode_video_frame(data)


def test_switch_to_binary_and_test_binary_are_answered_with_a_protocol_ack() -> None:
    assert jm.parse('{"type":"switch_to_binary"}') == jm.BinaryProbe(None, switch=True)
    assert jm.parse('{"type":"test_binary","id":4}') == jm.BinaryProbe(4, switch=False)
    assert jm.protocol_ack(None) == '{"type":"protocol_ack","message":"Binary protocol supported"}'


def test_get_video_frame_takes_the_seeds_video_type_and_serves_only_the_base_video() -> None:
    request = jm.parse('{"type":"get_video_frame","model_name":"m","frame_id":1,"video_type":"full_body"}')

    assert request == jm.GetVideoFrameRequest(None, "m", 1, "full_body")
    with pytest.raises(ProtocolError, match="full_body"):
        jm.parse('{"type":"get_video_frame","model_name":"m","frame_id":1,"video_type":"crops_328"}')
    with pytest.raises(ProtocolError, match="string"):
        jm.parse('{"type":"get_video_frame","model_name":"m","frame_id":1,"video_type":3}')


@FUZZ
@given(crop_requests)
def test_any_valid_crop_request_encodes_and_decodes_to_itself(request_: CropRequest) -> None:
    assert decode_request(encode_request(request_)) == request_


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 2**32 - 1), st.binary(max_size=40), st.integers(-2, 2))
def test_code_layout_bytes_decode_to_a_request_that_encodes_back_or_a_protocol_error(
    name: bytes, frame_id: int, audio: bytes, skew: int
) -> None:
    data = code_request(name, frame_id, audio)
    data = data[: len(data) + skew] if skew < 0 else data + bytes(skew)
    try:
        outcome: CropRequest | FrameRequest | ProtocolError = decode_request(data)
    except ProtocolError as error:
        outcome = error
    if isinstance(outcome, ProtocolError):
        assert outcome.code == "INVALID_ARGUMENT"
    else:
        assert encode_request(outcome) == data
