"""The v2 messages of video output: SESSION_START's video and play flags, KEY_FRAME, VIDEO_CONFIG and
VIDEO_CHUNK."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsync_protocol import v2
from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID, Bounds, OutputMode

FUZZ = settings(max_examples=1000, derandomize=True, database=None, deadline=None)
BOUNDS = Bounds(528, 176, 720, 384)
H264, VP8, VP9, AV1 = v2.VideoCodec


def _header(kind: int, request_id: int = 1, flags: int = 0) -> bytes:
    return v2.HEADER.pack(v2.VERSION, kind, flags, request_id)


def _session_start(flags: int, tail: bytes) -> bytes:
    return _header(v2.SESSION_START, 77, flags) + bytes.fromhex("00000000 01 00 01 00 02000000") + b"m" + tail


def test_a_video_session_start_lists_its_codecs_after_the_name() -> None:
    start = v2.SessionStart(7, "m", credits=2, video_codecs=(VP9, H264))

    data = v2.encode_client(start)

    assert data[2:4] == b"\x01\x00"
    assert data[-3:] == bytes([2, VP9, H264])
    assert v2.decode_client(data) == start


def test_a_play_session_is_a_flag_and_needs_no_codec_list() -> None:
    start = v2.SessionStart(7, "m", play=True)

    data = v2.encode_client(start)

    assert data[2:4] == b"\x02\x00"
    assert len(data) == 21
    assert v2.decode_client(data) == start


def test_a_session_start_without_flags_is_the_jpeg_session_it_always_was() -> None:
    start = v2.SessionStart(7, "sanders", 0, OutputMode.FULL_FRAME, 0, 2)

    assert v2.decode_client(v2.encode_client(start)) == start
    assert v2.encode_client(start)[2:4] == b"\x00\x00"
    assert start.video_codecs == ()
    assert start.play is False


def test_a_key_frame_request_is_the_header_alone() -> None:
    assert v2.encode_client(v2.KeyFrameRequest(7)) == bytes.fromhex("02 14 0000 07000000")
    assert v2.decode_client(bytes.fromhex("02 14 0000 07000000")) == v2.KeyFrameRequest(7)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_session_start(0x0004, b""), "unknown SESSION_START flags 0x0004"),
        (_session_start(0x0001, b""), "SESSION_START is truncated"),
        (_session_start(0x0001, b"\x00"), "codec_count must be 1-4, got 0"),
        (_session_start(0x0001, b"\x05" + b"\x01" * 5), "codec_count must be 1-4, got 5"),
        (_session_start(0x0001, b"\x02\x01"), "2 codecs announced"),
        (_session_start(0x0001, b"\x01\x05"), "a codec must be 1 (H.264), 2 (VP8), 3 (VP9) or 4 (AV1)"),
        (_session_start(0x0001, b"\x01\x00"), "a codec must be"),
        (_session_start(0x0001, b"\x02\x01\x01"), "each codec may be offered once"),
        (_session_start(0x0001, b"\x01\x01\x00"), "SESSION_START must be exactly"),
        (_session_start(0x0002, b"\x01\x01"), "SESSION_START must be exactly"),
        (_header(v2.KEY_FRAME, 77) + b"\x00", "KEY_FRAME must be exactly 8 bytes, got 9"),
        (_header(v2.KEY_FRAME, 77, flags=1), "flags must be 0"),
    ],
)
def test_a_malformed_video_client_message_is_refused_with_its_id(data: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        v2.decode_client(data)

    assert problem in caught.value.message
    assert caught.value.request_id == 77


@pytest.mark.parametrize(
    "message",
    [
        v2.SessionStart(1, "m", video_codecs=(H264, H264)),
        v2.SessionStart(1, "m", video_codecs=(H264, VP8, VP9, AV1, H264)),
    ],
)
def test_a_codec_list_the_wire_cannot_carry_is_not_encoded(message: v2.ClientMessage) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        v2.encode_client(message)


def test_a_video_config_carries_the_codec_string_size_and_description() -> None:
    data = v2.encode_video_config(7, H264, "avc1.42e01f", 192, 208, b"\x01\x02")

    assert data[:14] == bytes.fromhex("02 92 0000 07000000 01 0b c000 d000")
    assert data[14:25] == b"avc1.42e01f"
    assert v2.decode_server(data) == v2.VideoConfig(7, H264, "avc1.42e01f", 192, 208, b"\x01\x02")


def test_a_video_chunk_is_a_fixed_part_then_the_encoder_bytes_unchanged() -> None:
    chunk = b"\x00\x00\x00\x01\x65" + bytes(range(40))

    data = v2.encode_video_chunk(7, 3, 120.0, True, False, 3, BOUNDS, chunk)

    assert len(data) == 40 + len(chunk)
    assert data[2:4] == b"\x01\x00"
    assert data[40:] == chunk
    assert v2.decode_server(data) == v2.VideoChunk(7, 3, 120.0, True, False, 3, BOUNDS, chunk)


def test_a_video_chunk_flags_a_key_frame_and_the_end_of_an_utterance_apart() -> None:
    data = v2.encode_video_chunk(7, 3, 120.0, False, True, 3, BOUNDS, b"x")

    assert data[2:4] == b"\x02\x00"
    decoded = v2.decode_server(data)
    assert isinstance(decoded, v2.VideoChunk)
    assert (decoded.key_frame, decoded.end_of_utterance) == (False, True)


def test_a_codec_string_must_be_one_to_255_characters() -> None:
    with pytest.raises(ValueError, match="1-255"):
        v2.encode_video_config(7, H264, "", 16, 16, b"")
    with pytest.raises(ValueError, match="1-255"):
        v2.encode_video_config(7, H264, "a" * 256, 16, 16, b"")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_header(v2.VIDEO_CONFIG) + bytes.fromhex("01 01 1000"), "VIDEO_CONFIG is truncated"),
        (_header(v2.VIDEO_CONFIG) + bytes.fromhex("01 05 1000 1000") + b"avc", "VIDEO_CONFIG is truncated"),
        (_header(v2.VIDEO_CONFIG) + bytes.fromhex("09 01 1000 1000") + b"x", "codec 9 is unknown"),
        (_header(v2.VIDEO_CONFIG) + bytes.fromhex("01 00 1000 1000"), "1-255 ASCII"),
        (_header(v2.VIDEO_CONFIG) + bytes.fromhex("01 01 1000 1000 ff"), "1-255 ASCII"),
        (_header(v2.VIDEO_CONFIG, flags=1) + bytes.fromhex("01 01 1000 1000") + b"x", "unknown flags"),
        (_header(v2.VIDEO_CHUNK) + b"\x00" * 32, "VIDEO_CHUNK is truncated"),
        (_header(v2.VIDEO_CHUNK, flags=4) + b"\x00" * 33, "unknown flags 0x0004"),
    ],
)
def test_a_malformed_video_server_message_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        v2.decode_server(data)

    assert problem in caught.value.message


request_ids = st.integers(1, v2.MAX_REQUEST_ID)
codec_lists = st.lists(st.sampled_from(v2.VideoCodec), min_size=1, max_size=4, unique=True).map(tuple)
client_messages = st.one_of(
    st.builds(
        v2.SessionStart,
        request_ids,
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
        st.integers(0, MAX_FRAME_ID),
        st.sampled_from(OutputMode),
        st.integers(0, 100),
        st.integers(0, 2**32 - 1),
        st.none(),
        st.just(()) | codec_lists,
        st.booleans(),
    ),
    st.builds(v2.KeyFrameRequest, request_ids),
)
i32 = st.integers(-(2**31), 2**31 - 1)
server_messages = st.one_of(
    st.builds(
        v2.VideoConfig,
        request_ids,
        st.sampled_from(v2.VideoCodec),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789.", min_size=1, max_size=255),
        st.integers(0, 65535),
        st.integers(0, 65535),
        st.binary(max_size=100),
    ),
    st.builds(
        v2.VideoChunk,
        request_ids,
        st.integers(0, 2**32 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
        st.booleans(),
        st.integers(0, MAX_FRAME_ID),
        st.builds(Bounds, i32, i32, i32, i32),
        st.binary(min_size=1, max_size=300),
    ),
)


@FUZZ
@given(client_messages)
def test_any_valid_video_client_message_encodes_and_decodes_to_itself(message: v2.ClientMessage) -> None:
    assert v2.decode_client(v2.encode_client(message)) == message


@FUZZ
@given(server_messages)
def test_any_valid_video_server_message_encodes_and_decodes_to_itself(message: v2.ServerMessage) -> None:
    assert v2.decode_server(v2.encode_server(message)) == message


def _decoded(decode: Callable[[bytes], object], data: bytes) -> object:
    try:
        return decode(data)
    except ProtocolError as error:
        return error


@FUZZ
@given(st.sampled_from([v2.SESSION_START, v2.KEY_FRAME]), st.integers(0, 3), st.binary(max_size=80))
def test_any_body_of_a_video_client_message_decodes_to_its_bytes_or_is_refused(
    kind: int, flags: int, body: bytes
) -> None:
    data = _header(kind, 1, flags) + body
    outcome = _decoded(v2.decode_client, data)
    if isinstance(outcome, ProtocolError):
        assert (outcome.code, outcome.request_id) == ("INVALID_ARGUMENT", 1)
    else:
        assert v2.encode_client(cast(v2.ClientMessage, outcome)) == data


@FUZZ
@given(st.sampled_from([v2.VIDEO_CONFIG, v2.VIDEO_CHUNK]), st.integers(0, 3), st.binary(max_size=80))
def test_any_body_of_a_video_server_message_decodes_to_a_fixed_point_or_is_refused(
    kind: int, flags: int, body: bytes
) -> None:
    data = _header(kind, 1, flags) + body
    outcome = _decoded(v2.decode_server, data)
    if isinstance(outcome, ProtocolError):
        assert outcome.code == "INVALID_ARGUMENT"
    else:
        once = v2.encode_server(cast(v2.ServerMessage, outcome))
        assert len(once) == len(data)
        assert v2.encode_server(v2.decode_server(once)) == once
