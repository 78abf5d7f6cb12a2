"""The client's side of ``lipsync.v2``: client messages written, server messages read.

The proxy's side, ``lipsync_proxy.protocol.v2``, holds what both sides share (the message types and
flags, the client messages' classes, the structs of every fixed part) with the proxy's own half: the
decoder of client messages and the writers of server messages. This module offers all of that too, so
that a client imports one module, and adds the other half: :func:`encode_client`, :func:`decode_server`
with the server messages' classes, and :func:`encode_server`, the inverse of ``decode_server`` for tests
and fuzzing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from lipsync_proxy.protocol.errors import GRPC_STATUS_NAMES, ProtocolError
from lipsync_proxy.protocol.fields import Bounds, OutputMode, Timings
from lipsync_proxy.protocol.v2 import *  # noqa: F403
from lipsync_proxy.protocol.v2 import (
    CANCEL,
    CENTER_DEFAULT,
    CONTROL_FIXED,
    CREDIT,
    CREDIT_FIXED,
    ERROR,
    FLAG_CHUNK_END_OF_UTTERANCE,
    FLAG_END_OF_UTTERANCE,
    FLAG_KEY_FRAME,
    FLAG_PLAY,
    FLAG_VIDEO,
    FRAME,
    FRAME_FIXED,
    HEADER,
    INFER,
    INFER_FIXED,
    KEY_FRAME,
    MAX_ERROR_MESSAGE_BYTES,
    SESSION_AUDIO,
    SESSION_CONTROL,
    SESSION_END,
    SESSION_FRAME,
    SESSION_FRAME_FIXED,
    SESSION_START,
    SESSION_START_FIXED,
    STATUS_FIXED,
    VERSION,
    VIDEO_CHUNK,
    VIDEO_CHUNK_FIXED,
    VIDEO_CONFIG,
    VIDEO_CONFIG_FIXED,
    AudioWindow,
    Cancel,
    ClientMessage,
    Credit,
    InferRequest,
    KeyFrameRequest,
    SessionAudio,
    SessionControl,
    SessionStart,
    VideoCodec,
    decode_client,
    decode_mode,
    encode_error,
    encode_frame,
    encode_session_end,
    encode_session_frame,
    encode_video_chunk,
    encode_video_config,
    need,
    read_header,
)


@dataclass(frozen=True, slots=True)
class FrameReply:
    """FRAME: the answer to an INFER."""

    request_id: int
    frame_id: int
    output_mode: OutputMode
    #: The JPEG's size in pixels.
    width: int
    height: int
    bounds: Bounds
    timings: Timings
    image: bytes


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """ERROR: a request failed (final for an INFER; a non-fatal problem for a session)."""

    request_id: int
    #: A gRPC status name other than OK.
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SessionFrame:
    """SESSION_FRAME: one frame a session pushes at the model's fps."""

    request_id: int
    #: 0, 1, 2, ... for the frames of this session.
    sequence: int
    #: Where in the session's audio this frame sits.
    audio_time_ms: float
    end_of_utterance: bool
    frame_id: int
    output_mode: OutputMode
    width: int
    height: int
    bounds: Bounds
    timings: Timings
    image: bytes


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """SESSION_END: the last message of a session; ``code`` is OK or the gRPC status that ended it."""

    request_id: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """VIDEO_CONFIG: how to decode the key frame that follows and the chunks after it."""

    request_id: int
    codec: VideoCodec
    #: The WebCodecs codec string, e.g. ``avc1.42e01f``.
    codec_string: str
    #: The coded size of every chunk until the next VIDEO_CONFIG.
    width: int
    height: int
    #: The decoder configuration record (WebCodecs' ``description``); empty when the stream carries
    #: it in band (H.264 in Annex B, VP8, VP9, AV1).
    description: bytes


@dataclass(frozen=True, slots=True)
class VideoChunk:
    """VIDEO_CHUNK: one encoded frame of a video session; ``bounds`` is the crop window it covers."""

    request_id: int
    sequence: int
    #: Where in the session's audio this frame sits (the chunk's timestamp).
    audio_time_ms: float
    key_frame: bool
    end_of_utterance: bool
    frame_id: int
    bounds: Bounds
    data: bytes


ServerMessage = FrameReply | ErrorReply | SessionFrame | SessionEnd | VideoConfig | VideoChunk


# --- client messages -------------------------------------------------------------------------------


def encode_client(message: ClientMessage) -> bytes:
    """The wire bytes of a client message; raises ValueError for a message the protocol cannot carry.

    The bytes are decoded again before they are returned, so the decoder's rules are the only rules
    and nothing is encoded that the proxy would refuse.
    """
    try:
        data = _pack_client(message)
        decoded = decode_client(data)
    except (struct.error, UnicodeEncodeError, ProtocolError) as error:
        raise ValueError(f"{type(message).__name__} cannot be sent: {error}") from None
    if decoded != message:
        raise ValueError(f"{message!r} cannot be sent as it is; it would arrive as {decoded!r}")
    return data


def _pack_client(message: ClientMessage) -> bytes:
    rid = message.request_id
    match message:
        case InferRequest():
            name, traceparent = message.model_name.encode("utf-8"), _ascii(message.traceparent)
            audio = message.audio or AudioWindow(b"")
            center = CENTER_DEFAULT if audio.center_sample is None else audio.center_sample
            fixed = INFER_FIXED.pack(
                VERSION, INFER, 0, rid, message.frame_id, message.output_mode.wire,
                message.jpeg_quality, len(name), len(traceparent), center,
            )  # fmt: skip
            return fixed + name + traceparent + audio.pcm16
        case SessionStart():
            name, traceparent = message.model_name.encode("utf-8"), _ascii(message.traceparent)
            flags = (FLAG_VIDEO if message.video_codecs else 0) | (FLAG_PLAY if message.play else 0)
            fixed = SESSION_START_FIXED.pack(
                VERSION, SESSION_START, flags, rid, message.start_frame_id, message.output_mode.wire,
                message.jpeg_quality, len(name), len(traceparent), message.credits,
            )  # fmt: skip
            codecs = (
                bytes([len(message.video_codecs), *message.video_codecs]) if message.video_codecs else b""
            )
            return fixed + name + traceparent + codecs
        case Cancel():
            return HEADER.pack(VERSION, CANCEL, 0, rid)
        case SessionAudio():
            return HEADER.pack(VERSION, SESSION_AUDIO, 0, rid) + message.pcm16
        case SessionControl():
            return CONTROL_FIXED.pack(VERSION, SESSION_CONTROL, 0, rid, message.action)
        case Credit():
            return CREDIT_FIXED.pack(VERSION, CREDIT, 0, rid, message.credits)
        case KeyFrameRequest():
            return HEADER.pack(VERSION, KEY_FRAME, 0, rid)


def _ascii(text: str | None) -> bytes:
    return b"" if text is None else text.encode("ascii")


# --- server messages -------------------------------------------------------------------------------


def encode_server(message: ServerMessage) -> bytes:
    """A decoded server message written back as bytes (for tests and fuzzing; the proxy itself calls the
    encoders above with plain values, without building these objects)."""
    match message:
        case FrameReply():
            return encode_frame(
                message.request_id,
                message.frame_id,
                message.output_mode,
                message.bounds,
                message.width,
                message.height,
                message.timings,
                message.image,
            )
        case SessionFrame():
            return encode_session_frame(
                message.request_id,
                message.sequence,
                message.audio_time_ms,
                message.end_of_utterance,
                message.frame_id,
                message.output_mode,
                message.bounds,
                message.width,
                message.height,
                message.timings,
                message.image,
            )
        case ErrorReply():
            return encode_error(message.request_id, message.code, message.message)
        case SessionEnd():
            return encode_session_end(message.request_id, message.code, message.message)
        case VideoConfig():
            return encode_video_config(
                message.request_id,
                message.codec,
                message.codec_string,
                message.width,
                message.height,
                message.description,
            )
        case VideoChunk():
            return encode_video_chunk(
                message.request_id,
                message.sequence,
                message.audio_time_ms,
                message.key_frame,
                message.end_of_utterance,
                message.frame_id,
                message.bounds,
                message.data,
            )


def decode_server(data: bytes) -> ServerMessage:
    """Parse one binary message from the proxy (for clients and tests); raise ProtocolError for
    anything that is not a valid server message."""
    kind, flags, request_id = read_header(data)
    decoder = _SERVER_DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(f"unknown server message type 0x{kind:02x}", request_id=request_id)
    allowed = _SERVER_FLAGS.get(kind, 0)
    if flags & ~allowed:
        raise ProtocolError(f"unknown flags 0x{flags:04x}", request_id=request_id)
    return decoder(data, flags, request_id)


def _decode_frame(data: bytes, flags: int, rid: int) -> FrameReply:
    need(data, FRAME_FIXED.size + 1, "FRAME", rid)
    fields = FRAME_FIXED.unpack_from(data)
    return FrameReply(
        rid,
        fields[4],
        decode_mode(fields[18], rid),
        fields[5],
        fields[6],
        Bounds(*fields[7:11]),
        Timings(*fields[11:18]),
        data[FRAME_FIXED.size :],
    )


def _decode_session_frame(data: bytes, flags: int, rid: int) -> SessionFrame:
    need(data, SESSION_FRAME_FIXED.size + 1, "SESSION_FRAME", rid)
    fields = SESSION_FRAME_FIXED.unpack_from(data)
    return SessionFrame(
        rid,
        fields[4],
        fields[5],
        bool(flags & FLAG_END_OF_UTTERANCE),
        fields[6],
        decode_mode(fields[20], rid),
        fields[7],
        fields[8],
        Bounds(*fields[9:13]),
        Timings(*fields[13:20]),
        data[SESSION_FRAME_FIXED.size :],
    )


def _decode_video_config(data: bytes, flags: int, rid: int) -> VideoConfig:
    need(data, VIDEO_CONFIG_FIXED.size, "VIDEO_CONFIG", rid)
    _, _, _, _, codec, text_len, width, height = VIDEO_CONFIG_FIXED.unpack_from(data)
    text_end = VIDEO_CONFIG_FIXED.size + text_len
    need(data, text_end, "VIDEO_CONFIG", rid)
    try:
        video_codec = VideoCodec(codec)
    except ValueError:
        raise ProtocolError(f"VIDEO_CONFIG codec {codec} is unknown", request_id=rid) from None
    text = data[VIDEO_CONFIG_FIXED.size : text_end]
    if not text or not text.isascii():
        raise ProtocolError("VIDEO_CONFIG codec string must be 1-255 ASCII characters", request_id=rid)
    return VideoConfig(rid, video_codec, text.decode("ascii"), width, height, data[text_end:])


def _decode_video_chunk(data: bytes, flags: int, rid: int) -> VideoChunk:
    need(data, VIDEO_CHUNK_FIXED.size + 1, "VIDEO_CHUNK", rid)
    fields = VIDEO_CHUNK_FIXED.unpack_from(data)
    return VideoChunk(
        rid,
        fields[4],
        fields[5],
        bool(flags & FLAG_KEY_FRAME),
        bool(flags & FLAG_CHUNK_END_OF_UTTERANCE),
        fields[6],
        Bounds(*fields[7:11]),
        data[VIDEO_CHUNK_FIXED.size :],
    )


def _decode_error(data: bytes, flags: int, rid: int) -> ErrorReply:
    code, message = _decode_status(data, "ERROR", rid)
    if code == "OK":
        raise ProtocolError("an ERROR cannot carry status OK", request_id=rid)
    return ErrorReply(rid, code, message)


def _decode_session_end(data: bytes, flags: int, rid: int) -> SessionEnd:
    code, message = _decode_status(data, "SESSION_END", rid)
    return SessionEnd(rid, code, message)


def _decode_status(data: bytes, name: str, rid: int) -> tuple[str, str]:
    need(data, STATUS_FIXED.size, name, rid)
    number = data[HEADER.size]
    code = GRPC_STATUS_NAMES.get(number)
    if code is None:
        raise ProtocolError(f"{name} status {number} is not a gRPC status code", request_id=rid)
    text = data[STATUS_FIXED.size :]
    if len(text) > MAX_ERROR_MESSAGE_BYTES:
        raise ProtocolError(f"{name} text is longer than {MAX_ERROR_MESSAGE_BYTES} bytes", request_id=rid)
    try:
        return code, text.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{name} text is not valid UTF-8", request_id=rid) from None


_SERVER_DECODERS: dict[int, Callable[[bytes, int, int], ServerMessage]] = {
    ERROR: _decode_error,
    FRAME: _decode_frame,
    SESSION_FRAME: _decode_session_frame,
    SESSION_END: _decode_session_end,
    VIDEO_CONFIG: _decode_video_config,
    VIDEO_CHUNK: _decode_video_chunk,
}
_SERVER_FLAGS = {
    SESSION_FRAME: FLAG_END_OF_UTTERANCE,
    VIDEO_CHUNK: FLAG_KEY_FRAME | FLAG_CHUNK_END_OF_UTTERANCE,
}
