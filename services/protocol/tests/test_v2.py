from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsync_protocol import v2
from lipsync_protocol.errors import GRPC_STATUS_CODES, ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID, Bounds, OutputMode, Timings

FUZZ = settings(max_examples=1000, derandomize=True, database=None, deadline=None)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TIMINGS = Timings(0.5, 1.0, 9.5, 1.25, 3.0, 15.25, 4)
BOUNDS = Bounds(540, 180, 720, 360)
ALL_TYPES = [
    v2.INFER,
    v2.CANCEL,
    v2.SESSION_START,
    v2.SESSION_AUDIO,
    v2.SESSION_CONTROL,
    v2.CREDIT,
    v2.ERROR,
    v2.FRAME,
    v2.SESSION_FRAME,
    v2.SESSION_END,
]
JPEG = b"\xff\xd8\xff\xe0jpeg\xff\xd9"


def _header(kind: int, request_id: int = 1, flags: int = 0) -> bytes:
    return v2.HEADER.pack(v2.VERSION, kind, flags, request_id)


def _refusal(data: bytes, decode: Callable[[bytes], object] = v2.decode_client) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode(data)
    assert caught.value.code == "INVALID_ARGUMENT"
    return caught.value


# --- client messages -------------------------------------------------------------------------------


def test_a_minimal_infer_is_twenty_bytes_and_a_name() -> None:
    data = v2.encode_client(v2.InferRequest(1, "sanders", 50))

    assert data == _header(v2.INFER) + bytes.fromhex("32000000 01 00 07 00 ffffffff") + b"sanders"
    assert v2.decode_client(data) == v2.InferRequest(1, "sanders", 50)


def test_an_infer_with_every_option_round_trips() -> None:
    message = v2.InferRequest(
        9, "sanders", 7, OutputMode.FACE_CROP, 90, v2.AudioWindow(b"\x01\x00" * 640, 320), TRACEPARENT
    )

    assert v2.decode_client(v2.encode_client(message)) == message


def test_an_audio_window_without_a_center_means_the_middle() -> None:
    message = v2.InferRequest(2, "m", 1, audio=v2.AudioWindow(b"\x00\x00" * 4))
    data = v2.encode_client(message)

    assert struct.unpack_from("<i", data, 16) == (v2.CENTER_DEFAULT,)
    assert v2.decode_client(data) == message


def test_the_session_messages_round_trip() -> None:
    messages: list[v2.ClientMessage] = [
        v2.SessionStart(5, "sanders", 10, OutputMode.FACE_CROP, 80, 8, TRACEPARENT),
        v2.SessionAudio(5, b"\x10\x00" * 1600),
        v2.SessionControl(5, v2.SessionAction.END),
        v2.Credit(5, 4),
        v2.Cancel(5),
    ]

    assert [v2.decode_client(v2.encode_client(message)) for message in messages] == messages


def test_a_message_with_another_version_byte_is_refused_without_an_id() -> None:
    error = _refusal(b"\x03" + v2.encode_client(v2.Cancel(4))[1:])

    assert "version byte 3" in error.message
    assert error.request_id is None


def test_a_message_shorter_than_the_header_is_refused_without_an_id() -> None:
    assert _refusal(b"\x02\x01\x00").request_id is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_header(0x7F, 77), "unknown client message type 0x7f"),
        (_header(v2.FRAME, 77), "unknown client message type 0x81"),
        (_header(v2.CANCEL, 77, flags=1), "flags must be 0"),
        (_header(v2.CANCEL, 77) + b"\x00", "CANCEL must be exactly 8 bytes, got 9"),
        (_header(v2.INFER, 77) + b"\x00" * 11, "INFER is truncated"),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 05 00 ffffffff") + b"abc",
            "INFER is truncated",
        ),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 00 00 ffffffff"),
            "model name must not be empty",
        ),
        (_header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 00 ffffffff ff"), "not valid UTF-8"),
        (_header(v2.INFER, 77) + bytes.fromhex("00000080 01 00 01 00 ffffffff") + b"m", "frame_id must be"),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 03 00 01 00 ffffffff") + b"m",
            "output_mode must be",
        ),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 00 00 01 00 ffffffff") + b"m",
            "output_mode must be",
        ),
        (_header(v2.INFER, 77) + bytes.fromhex("01000000 01 65 01 00 ffffffff") + b"m", "jpeg_quality"),
        (_header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 00 ffffffff") + b"m\x00", "even count"),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 00 ffffffff") + b"m" + b"\x00" * 64002,
            "at most 64000 bytes",
        ),
        (_header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 00 00000000") + b"m", "center_sample"),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 00 02000000") + b"m\x00\x00\x00\x00",
            "[0, 2)",
        ),
        (
            _header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 00 feffffff") + b"m\x00\x00",
            "center_sample",
        ),
        (_header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 03 ffffffff") + b"m00-", "W3C"),
        (_header(v2.INFER, 77) + bytes.fromhex("01000000 01 00 01 01 ffffffff") + b"m\xff", "ASCII"),
        (
            _header(v2.SESSION_START, 77) + bytes.fromhex("00000000 01 00 01 00 00000000") + b"m!",
            "exactly 21",
        ),
        (
            _header(v2.SESSION_START, 77) + bytes.fromhex("ffffffff 01 00 01 00 00000000") + b"m",
            "start_frame_id",
        ),
        (_header(v2.SESSION_AUDIO, 77), "2-64000 bytes"),
        (_header(v2.SESSION_AUDIO, 77) + b"\x00\x00\x00", "2-64000 bytes"),
        (_header(v2.SESSION_CONTROL, 77) + b"\x00", "action must be 1 (interrupt) or 2 (end), got 0"),
        (_header(v2.SESSION_CONTROL, 77), "SESSION_CONTROL must be exactly 9 bytes"),
        (_header(v2.CREDIT, 77) + b"\x00\x00\x00\x00", "at least 1"),
        (_header(v2.CREDIT, 77) + b"\x01\x00", "CREDIT must be exactly 12 bytes"),
    ],
)
def test_a_malformed_client_message_is_refused_and_the_error_echoes_its_id(data: bytes, problem: str) -> None:
    error = _refusal(data)

    assert problem in error.message
    assert error.request_id == 77


def test_request_id_zero_is_reserved() -> None:
    assert "reserved" in _refusal(_header(v2.CANCEL, 0)).message


@pytest.mark.parametrize(
    "message",
    [
        v2.InferRequest(0, "m", 1),
        v2.InferRequest(2**32, "m", 1),
        v2.InferRequest(1, "", 1),
        v2.InferRequest(1, "m" * 256, 1),
        v2.InferRequest(1, "m", -1),
        v2.InferRequest(1, "m", MAX_FRAME_ID + 1),
        v2.InferRequest(1, "m", 1, jpeg_quality=101),
        v2.InferRequest(1, "m", 1, traceparent="nope"),
        v2.InferRequest(1, "m", 1, audio=v2.AudioWindow(b"")),
        v2.InferRequest(1, "m", 1, audio=v2.AudioWindow(b"\x00")),
        v2.InferRequest(1, "m", 1, audio=v2.AudioWindow(b"\x00\x00", 1)),
        v2.SessionStart(1, "m", credits=-1),
        v2.SessionStart(1, "m", credits=2**32),
        v2.SessionAudio(1, b""),
        v2.SessionAudio(1, b"\x00" * 64002),
        v2.Credit(1, 0),
    ],
)
def test_a_client_message_the_wire_cannot_carry_is_not_encoded(message: v2.ClientMessage) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        v2.encode_client(message)


# --- server messages -------------------------------------------------------------------------------


def test_a_frame_reply_is_a_fixed_part_then_the_jpeg() -> None:
    data = v2.encode_frame(3, 50, OutputMode.FACE_CROP, BOUNDS, 180, 180, TIMINGS, memoryview(JPEG))

    assert data[:8] == _header(v2.FRAME, 3)
    assert data[59:] == JPEG
    assert v2.decode_server(data) == v2.FrameReply(
        3, 50, OutputMode.FACE_CROP, 180, 180, BOUNDS, TIMINGS, JPEG
    )


def test_a_session_frame_flags_the_end_of_an_utterance() -> None:
    data = v2.encode_session_frame(
        5, 12, 480.0, True, 60, OutputMode.FULL_FRAME, BOUNDS, 1280, 720, TIMINGS, JPEG
    )

    assert data[2:4] == b"\x01\x00"
    assert data[71:] == JPEG
    assert v2.decode_server(data) == v2.SessionFrame(
        5, 12, 480.0, True, 60, OutputMode.FULL_FRAME, 1280, 720, BOUNDS, TIMINGS, JPEG
    )


def test_an_error_carries_the_status_number_and_text() -> None:
    data = v2.encode_error(8, "NOT_FOUND", "model 'x' not found; available models: sanders")

    assert data[8] == GRPC_STATUS_CODES["NOT_FOUND"]
    assert v2.decode_server(data) == v2.ErrorReply(
        8, "NOT_FOUND", "model 'x' not found; available models: sanders"
    )


def test_an_error_cannot_say_ok_and_needs_a_known_code() -> None:
    with pytest.raises(ValueError, match="OK"):
        v2.encode_error(1, "OK", "")
    with pytest.raises(ValueError, match="not a gRPC status name"):
        v2.encode_error(1, "BROKEN", "")


def test_a_long_error_text_is_cut_on_a_character_boundary() -> None:
    data = v2.encode_error(1, "INTERNAL", "é" * 1000)
    message = v2.decode_server(data)

    assert isinstance(message, v2.ErrorReply)
    assert message.message == "é" * 512
    assert len(data) == 9 + 1024


def test_a_session_end_defaults_to_ok() -> None:
    assert v2.decode_server(v2.encode_session_end(5)) == v2.SessionEnd(5, "OK", "")
    assert v2.decode_server(
        v2.encode_session_end(5, "CANCELLED", "cancelled by the client")
    ) == v2.SessionEnd(5, "CANCELLED", "cancelled by the client")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_header(v2.INFER), "unknown server message type 0x01"),
        (_header(v2.FRAME, flags=1) + b"\x00" * 52, "unknown flags 0x0001"),
        (_header(v2.SESSION_FRAME, flags=2) + b"\x00" * 64, "unknown flags 0x0002"),
        (_header(v2.FRAME) + b"\x00" * 51, "FRAME is truncated"),
        (_header(v2.SESSION_FRAME) + b"\x00" * 63, "SESSION_FRAME is truncated"),
        (_header(v2.FRAME) + b"\x00" * 52, "output_mode must be"),
        (_header(v2.ERROR) + b"\x00", "cannot carry status OK"),
        (_header(v2.ERROR) + b"\x11", "not a gRPC status code"),
        (_header(v2.ERROR), "ERROR is truncated"),
        (_header(v2.SESSION_END) + b"\x00\xff", "not valid UTF-8"),
        (_header(v2.SESSION_END) + b"\x00" + b"x" * 1025, "longer than 1024"),
    ],
)
def test_a_malformed_server_message_is_refused(data: bytes, problem: str) -> None:
    assert problem in _refusal(data, v2.decode_server).message


# --- properties ------------------------------------------------------------------------------------

request_ids = st.integers(1, v2.MAX_REQUEST_ID)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
frame_ids = st.integers(0, MAX_FRAME_ID)
modes = st.sampled_from(OutputMode)
qualities = st.integers(0, 100)
traceparents = st.none() | st.builds(
    "{}-{}-{}-{}".format,
    st.sampled_from(["00", "01", "fe"]),
    st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32),
    st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    st.text("0123456789abcdef", min_size=2, max_size=2),
)
pcm = st.integers(1, 1000).flatmap(lambda samples: st.binary(min_size=2 * samples, max_size=2 * samples))


@st.composite
def audio_windows(draw: st.DrawFn) -> v2.AudioWindow:
    samples = draw(pcm)
    return v2.AudioWindow(samples, draw(st.none() | st.integers(0, len(samples) // 2 - 1)))


client_messages = st.one_of(
    st.builds(
        v2.InferRequest,
        request_ids,
        names,
        frame_ids,
        modes,
        qualities,
        st.none() | audio_windows(),
        traceparents,
    ),
    st.builds(v2.Cancel, request_ids),
    st.builds(
        v2.SessionStart,
        request_ids,
        names,
        frame_ids,
        modes,
        qualities,
        st.integers(0, 2**32 - 1),
        traceparents,
    ),
    st.builds(v2.SessionAudio, request_ids, pcm),
    st.builds(v2.SessionControl, request_ids, st.sampled_from(v2.SessionAction)),
    st.builds(v2.Credit, request_ids, st.integers(1, 2**32 - 1)),
)
i32 = st.integers(-(2**31), 2**31 - 1)
f32 = st.floats(width=32, allow_nan=False)
bounds = st.builds(Bounds, i32, i32, i32, i32)
timings = st.builds(Timings, f32, f32, f32, f32, f32, f32, st.integers(0, 65535))
sizes = st.integers(0, 65535)
images = st.binary(min_size=1, max_size=300)
texts = st.text(st.characters(codec="utf-8"), max_size=300).filter(lambda s: len(s.encode()) <= 1024)
server_messages = st.one_of(
    st.builds(v2.FrameReply, request_ids, frame_ids, modes, sizes, sizes, bounds, timings, images),
    st.builds(
        v2.SessionFrame,
        request_ids,
        st.integers(0, 2**32 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
        frame_ids,
        modes,
        sizes,
        sizes,
        bounds,
        timings,
        images,
    ),
    st.builds(
        v2.ErrorReply, request_ids, st.sampled_from([c for c in GRPC_STATUS_CODES if c != "OK"]), texts
    ),
    st.builds(v2.SessionEnd, request_ids, st.sampled_from(list(GRPC_STATUS_CODES)), texts),
)


@FUZZ
@given(client_messages)
def test_any_valid_client_message_encodes_and_decodes_to_itself(message: v2.ClientMessage) -> None:
    assert v2.decode_client(v2.encode_client(message)) == message


@FUZZ
@given(server_messages)
def test_any_valid_server_message_encodes_and_decodes_to_itself(message: v2.ServerMessage) -> None:
    assert v2.decode_server(v2.encode_server(message)) == message


def _check_client(data: bytes) -> None:
    try:
        outcome: v2.ClientMessage | ProtocolError = v2.decode_client(data)
    except ProtocolError as error:
        outcome = error
    if isinstance(outcome, ProtocolError):
        assert outcome.code == "INVALID_ARGUMENT"
        assert outcome.request_id in (None, int.from_bytes(data[4:8], "little"))
    else:
        # Whatever decodes has exactly one encoding: the bytes it came from.
        assert v2.encode_client(outcome) == data


def _check_server(data: bytes) -> None:
    try:
        outcome: v2.ServerMessage | ProtocolError = v2.decode_server(data)
    except ProtocolError as error:
        outcome = error
    if isinstance(outcome, ProtocolError):
        assert outcome.code == "INVALID_ARGUMENT"
    else:
        assert outcome.request_id == int.from_bytes(data[4:8], "little")


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_client_message_or_a_protocol_error(data: bytes) -> None:
    _check_client(data)


@FUZZ
@given(st.sampled_from([*ALL_TYPES, 0x7E]), st.binary(max_size=200))
def test_any_body_after_a_valid_header_decodes_or_is_a_protocol_error(kind: int, body: bytes) -> None:
    data = _header(kind, 1) + body
    _check_client(data)
    _check_server(data)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_server_message_or_a_protocol_error(data: bytes) -> None:
    _check_server(data)


@FUZZ
@given(client_messages | server_messages, st.data())
def test_a_valid_message_with_a_corrupted_byte_or_cut_short_still_decodes_or_is_refused(
    message: v2.ClientMessage | v2.ServerMessage, data: st.DataObject
) -> None:
    encoded = bytearray(
        v2.encode_client(message) if isinstance(message, v2.ClientMessage) else v2.encode_server(message)
    )
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    cut = bytes(encoded[: data.draw(st.integers(0, len(encoded)))])
    for candidate in (bytes(encoded), cut):
        _check_client(candidate)
        _check_server(candidate)
