"""The ``lipsync.v2`` binary protocol: requests with ids, out-of-order replies, sessions, credits.

Every message starts with the same 8-byte little-endian header::

    u8 version (2) | u8 type | u16 flags | u32 request_id

followed by a fixed part per type, then variable fields. Fields with a length byte come first; the
last variable field (audio, JPEG, error text) runs to the end of the message, so the proxy builds a
frame reply as ``header + image`` without touching the image again. ``docs/protocol.md`` describes
every message byte by byte; the constants and structs below are that description in code.

The proxy decodes client messages with :func:`decode_client` and writes server messages with the
per-type functions that take plain values (:func:`encode_frame`, :func:`encode_error`,
:func:`encode_session_frame`, :func:`encode_session_end`, :func:`encode_video_config`,
:func:`encode_video_chunk`). A client writes its messages with :func:`encode_client` and reads the
proxy's with :func:`decode_server`, into the server messages' classes; :func:`encode_server`, its
inverse, is for tests and fuzzing.

A session may ask for video output (SESSION_START flag ``VIDEO`` with the codecs the client decodes):
its frames then arrive as VIDEO_CHUNKs of one encoded stream of the face region, each key frame after
a VIDEO_CONFIG, and the client asks for a key frame with KEY_FRAME. The proxy forwards the chunks'
bytes as the server encoded them.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from lipsync_protocol.errors import GRPC_STATUS_CODES, GRPC_STATUS_NAMES, ProtocolError
from lipsync_protocol.fields import (
    SAMPLE_RATE,
    Bounds,
    OutputMode,
    Timings,
    check_frame_id,
    check_traceparent,
    decode_model_name,
)

#: The subprotocol a client offers to speak this protocol.
SUBPROTOCOL = "lipsync.v2"
#: The first byte of every message; a future incompatible protocol uses another value.
VERSION = 2

#: Message types. Client-to-server types have the high bit clear, server-to-client types set.
INFER = 0x01
CANCEL = 0x02
SESSION_START = 0x10
SESSION_AUDIO = 0x11
SESSION_CONTROL = 0x12
CREDIT = 0x13
KEY_FRAME = 0x14
ERROR = 0x80
FRAME = 0x81
SESSION_FRAME = 0x90
SESSION_END = 0x91
VIDEO_CONFIG = 0x92
VIDEO_CHUNK = 0x93

#: Flag of a SESSION_FRAME: the frame that ends an utterance (after END or INTERRUPT).
FLAG_END_OF_UTTERANCE = 0x0001
#: Flags of a SESSION_START: the session asks for video output (a codec list follows the traceparent);
#: the session plays the model's own audio track, paced by the server (no SESSION_AUDIO).
FLAG_VIDEO = 0x0001
FLAG_PLAY = 0x0002
#: Flags of a VIDEO_CHUNK: a key frame (decodable on its own, after the VIDEO_CONFIG before it); the
#: chunk that ends an utterance.
FLAG_KEY_FRAME = 0x0001
FLAG_CHUNK_END_OF_UTTERANCE = 0x0002

#: An INFER's audio window is at most 2 s of PCM16 mono at 16 kHz, as the server's AudioWindow.
MAX_AUDIO_WINDOW_BYTES = 2 * SAMPLE_RATE * 2
#: A SESSION_AUDIO chunk is at most 2 s too; longer audio is sent as several chunks.
MAX_SESSION_AUDIO_BYTES = MAX_AUDIO_WINDOW_BYTES
#: Error and session-end texts are at most this many UTF-8 bytes; longer ones are cut by the encoders.
MAX_ERROR_MESSAGE_BYTES = 1024
#: The largest JPEG quality; 0 asks for the server's default.
MAX_JPEG_QUALITY = 100
#: Request ids are 1 ... 2**32 - 1; 0 marks an error about a message whose id could not be read.
MAX_REQUEST_ID = 2**32 - 1
#: The INFER ``center_sample`` that means "the middle of the window".
CENTER_DEFAULT = -1

HEADER = struct.Struct("<BBHI")
#: Each struct is the header plus the fixed part of one message type (see docs/protocol.md).
INFER_FIXED = struct.Struct("<BBHI IBBBBi")
SESSION_START_FIXED = struct.Struct("<BBHI IBBBBI")
CONTROL_FIXED = struct.Struct("<BBHI B")
CREDIT_FIXED = struct.Struct("<BBHI I")
STATUS_FIXED = struct.Struct("<BBHI B")
FRAME_FIXED = struct.Struct("<BBHI IHH4i6fHB")
SESSION_FRAME_FIXED = struct.Struct("<BBHI Id IHH4i6fHB")
VIDEO_CONFIG_FIXED = struct.Struct("<BBHI BBHH")
VIDEO_CHUNK_FIXED = struct.Struct("<BBHI Id I4i")
#: The longest codec string of a VIDEO_CONFIG (its length is one byte).
MAX_CODEC_STRING_LENGTH = 255


class VideoCodec(enum.IntEnum):
    """A video codec a session may deliver; the numbers are the proto's ``VideoCodec``."""

    H264 = 1
    VP8 = 2
    VP9 = 3
    AV1 = 4


class SessionAction(enum.IntEnum):
    """A SESSION_CONTROL action; the numbers are the proto's ``SpeakControl.Action``."""

    #: Drop the audio not yet turned into frames and stop speaking at once.
    INTERRUPT = 1
    #: No more audio: send the frames of what was sent, then end the session.
    END = 2


@dataclass(frozen=True, slots=True)
class AudioWindow:
    """PCM16 little-endian mono 16 kHz audio around one frame (the proto's AudioWindow).

    The frame's instant is sample ``center_sample``; None means the middle of the window.
    """

    pcm16: bytes
    center_sample: int | None = None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """INFER: one lip-synced frame; answered by one FRAME or one ERROR with the same request id."""

    request_id: int
    model_name: str
    frame_id: int
    output_mode: OutputMode = OutputMode.FULL_FRAME
    #: 1-100, or 0 for the server's default.
    jpeg_quality: int = 0
    #: Drive the mouth with this audio instead of the package's own.
    audio: AudioWindow | None = None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """CANCEL: stop an INFER (answered by ERROR ``CANCELLED``) or a session (SESSION_END ``CANCELLED``).

    An id that is no longer in flight is ignored: the reply may have crossed the cancel on the wire.
    """

    request_id: int


@dataclass(frozen=True, slots=True)
class SessionStart:
    """SESSION_START: open a talking session (the ``Speak`` RPC) whose id is ``request_id``."""

    request_id: int
    model_name: str
    #: The template frame the session starts from.
    start_frame_id: int = 0
    output_mode: OutputMode = OutputMode.FULL_FRAME
    jpeg_quality: int = 0
    #: Frames the client can take at once; CREDIT grants more.
    credits: int = 0
    traceparent: str | None = None
    #: Non-empty: ask for video output; the codecs the client decodes, the one it prefers first.
    video_codecs: tuple[VideoCodec, ...] = ()
    #: Play the model's own audio track from ``start_frame_id``, paced by the server.
    play: bool = False


@dataclass(frozen=True, slots=True)
class SessionAudio:
    """SESSION_AUDIO: the next chunk of a session's PCM16 mono 16 kHz audio."""

    request_id: int
    pcm16: bytes


@dataclass(frozen=True, slots=True)
class SessionControl:
    """SESSION_CONTROL: end or interrupt a session's speech."""

    request_id: int
    action: SessionAction


@dataclass(frozen=True, slots=True)
class Credit:
    """CREDIT: the client can take ``credits`` more messages of session ``request_id``."""

    request_id: int
    credits: int


@dataclass(frozen=True, slots=True)
class KeyFrameRequest:
    """KEY_FRAME: the client lost or skipped a chunk of video session ``request_id`` and needs a key
    frame (with its VIDEO_CONFIG) to decode again."""

    request_id: int


ClientMessage = (
    InferRequest | Cancel | SessionStart | SessionAudio | SessionControl | Credit | KeyFrameRequest
)


# --- client messages, read by the proxy -----------------------------------------------------------


def decode_client(data: bytes) -> ClientMessage:
    """Parse one binary message from a client; raise ProtocolError, with ``request_id`` set once the
    header could be read, for anything that is not a valid client message."""
    kind, flags, request_id = read_header(data)
    decoder = _CLIENT_DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(f"unknown client message type 0x{kind:02x}", request_id=request_id)
    if kind == SESSION_START and flags & ~(FLAG_VIDEO | FLAG_PLAY):
        raise ProtocolError(f"unknown SESSION_START flags 0x{flags:04x}", request_id=request_id)
    if kind != SESSION_START and flags:
        raise ProtocolError(f"flags must be 0 in client messages, got 0x{flags:04x}", request_id=request_id)
    if request_id == 0:
        raise ProtocolError("request id 0 is reserved; use 1 or more", request_id=request_id)
    if kind == SESSION_START:
        return _decode_session_start(data, request_id, flags)
    return decoder(data, request_id)


def _decode_infer(data: bytes, rid: int) -> InferRequest:
    need(data, INFER_FIXED.size, "INFER", rid)
    _, _, _, _, frame_id, mode, quality, name_len, tp_len, center = INFER_FIXED.unpack_from(data)
    name_end = INFER_FIXED.size + name_len
    tp_end = name_end + tp_len
    need(data, tp_end, "INFER", rid)
    return InferRequest(
        rid,
        decode_model_name(data[INFER_FIXED.size : name_end], rid),
        check_frame_id(frame_id, rid),
        decode_mode(mode, rid),
        _decode_quality(quality, rid),
        _decode_audio_window(data[tp_end:], center, rid),
        _decode_traceparent(data[name_end:tp_end], rid),
    )


def _decode_session_start(data: bytes, rid: int, flags: int = 0) -> SessionStart:
    need(data, SESSION_START_FIXED.size, "SESSION_START", rid)
    _, _, _, _, frame_id, mode, quality, name_len, tp_len, credits = SESSION_START_FIXED.unpack_from(data)
    name_end = SESSION_START_FIXED.size + name_len
    tp_end = name_end + tp_len
    codecs: tuple[VideoCodec, ...] = ()
    if flags & FLAG_VIDEO:
        need(data, tp_end + 1, "SESSION_START", rid)
        codecs = _decode_codecs(data[tp_end + 1 : tp_end + 1 + data[tp_end]], data[tp_end], rid)
        tp_end += 1 + len(codecs)
    _exact(data, tp_end, "SESSION_START", rid)
    return SessionStart(
        rid,
        decode_model_name(data[SESSION_START_FIXED.size : name_end], rid),
        check_frame_id(frame_id, rid, "start_frame_id"),
        decode_mode(mode, rid),
        _decode_quality(quality, rid),
        credits,
        _decode_traceparent(data[name_end : name_end + tp_len], rid),
        codecs,
        bool(flags & FLAG_PLAY),
    )


def _decode_codecs(raw: bytes, count: int, rid: int) -> tuple[VideoCodec, ...]:
    if not 1 <= count <= len(VideoCodec):
        raise ProtocolError(f"codec_count must be 1-{len(VideoCodec)}, got {count}", request_id=rid)
    if len(raw) != count:
        raise ProtocolError(f"SESSION_START is truncated: {count} codecs announced", request_id=rid)
    try:
        codecs = tuple(VideoCodec(value) for value in raw)
    except ValueError:
        raise ProtocolError(
            f"a codec must be 1 (H.264), 2 (VP8), 3 (VP9) or 4 (AV1), got {list(raw)}", request_id=rid
        ) from None
    if len(set(codecs)) != count:
        raise ProtocolError("each codec may be offered once", request_id=rid)
    return codecs


def _decode_key_frame(data: bytes, rid: int) -> KeyFrameRequest:
    _exact(data, HEADER.size, "KEY_FRAME", rid)
    return KeyFrameRequest(rid)


def _decode_cancel(data: bytes, rid: int) -> Cancel:
    _exact(data, HEADER.size, "CANCEL", rid)
    return Cancel(rid)


def _decode_session_audio(data: bytes, rid: int) -> SessionAudio:
    size = len(data) - HEADER.size
    if not 0 < size <= MAX_SESSION_AUDIO_BYTES or size % 2:
        raise ProtocolError(
            f"SESSION_AUDIO must carry 2-{MAX_SESSION_AUDIO_BYTES} bytes of PCM16 (even), got {size}",
            request_id=rid,
        )
    return SessionAudio(rid, data[HEADER.size :])


def _decode_session_control(data: bytes, rid: int) -> SessionControl:
    _exact(data, CONTROL_FIXED.size, "SESSION_CONTROL", rid)
    action = data[HEADER.size]
    try:
        return SessionControl(rid, SessionAction(action))
    except ValueError:
        raise ProtocolError(
            f"SESSION_CONTROL action must be 1 (interrupt) or 2 (end), got {action}", request_id=rid
        ) from None


def _decode_credit(data: bytes, rid: int) -> Credit:
    _exact(data, CREDIT_FIXED.size, "CREDIT", rid)
    credits = CREDIT_FIXED.unpack_from(data)[4]
    if credits < 1:
        raise ProtocolError("a CREDIT grant must be at least 1", request_id=rid)
    return Credit(rid, credits)


def decode_mode(value: int, rid: int) -> OutputMode:
    try:
        return OutputMode.from_wire(value)
    except KeyError:
        raise ProtocolError(
            f"output_mode must be 1 (full frame) or 2 (face crop), got {value}", request_id=rid
        ) from None


def _decode_quality(value: int, rid: int) -> int:
    if value > MAX_JPEG_QUALITY:
        raise ProtocolError(f"jpeg_quality must be in [0, {MAX_JPEG_QUALITY}], got {value}", request_id=rid)
    return value


def _decode_traceparent(raw: bytes, rid: int) -> str | None:
    if not raw:
        return None
    if not raw.isascii():
        raise ProtocolError("traceparent must be ASCII", request_id=rid)
    return check_traceparent(raw.decode("ascii"), rid)


def _decode_audio_window(pcm: bytes, center: int, rid: int) -> AudioWindow | None:
    if len(pcm) > MAX_AUDIO_WINDOW_BYTES or len(pcm) % 2:
        raise ProtocolError(
            f"an INFER audio window must be at most {MAX_AUDIO_WINDOW_BYTES} bytes of PCM16 "
            f"(an even count), got {len(pcm)}",
            request_id=rid,
        )
    samples = len(pcm) // 2
    if center == CENTER_DEFAULT:
        return AudioWindow(pcm) if pcm else None
    if not 0 <= center < samples:
        raise ProtocolError(
            f"center_sample must be -1 (the middle) or in [0, {samples}), got {center}", request_id=rid
        )
    return AudioWindow(pcm, center)


_CLIENT_DECODERS: dict[int, Callable[[bytes, int], ClientMessage]] = {
    INFER: _decode_infer,
    CANCEL: _decode_cancel,
    SESSION_START: _decode_session_start,
    SESSION_AUDIO: _decode_session_audio,
    SESSION_CONTROL: _decode_session_control,
    CREDIT: _decode_credit,
    KEY_FRAME: _decode_key_frame,
}


# --- server messages, written by the proxy --------------------------------------------------------


def encode_frame(
    request_id: int,
    frame_id: int,
    output_mode: OutputMode,
    bounds: tuple[int, int, int, int],
    width: int,
    height: int,
    timings: tuple[float, float, float, float, float, float, int],
    image: bytes | memoryview,
) -> bytes:
    """FRAME, the reply to an INFER: fixed fields, then the JPEG (bytes or a memoryview of a gRPC
    reply; either is copied once, into the result). ``bounds`` and ``timings`` are in the order of
    :class:`Bounds` and :class:`Timings` (plain tuples do). A value out of its field's range raises
    struct.error: the caller passed something the server cannot have sent."""
    mode = output_mode.wire
    fixed = FRAME_FIXED.pack(VERSION, FRAME, 0, request_id, frame_id, width, height, *bounds, *timings, mode)
    return fixed + image


def encode_session_frame(
    request_id: int,
    sequence: int,
    audio_time_ms: float,
    end_of_utterance: bool,
    frame_id: int,
    output_mode: OutputMode,
    bounds: tuple[int, int, int, int],
    width: int,
    height: int,
    timings: tuple[float, float, float, float, float, float, int],
    image: bytes | memoryview,
) -> bytes:
    """SESSION_FRAME, one frame of session ``request_id``: as FRAME, after the sequence number and the
    frame's place in the session's audio; flag bit 0 marks the end of an utterance."""
    flags = FLAG_END_OF_UTTERANCE if end_of_utterance else 0
    fixed = SESSION_FRAME_FIXED.pack(
        VERSION, SESSION_FRAME, flags, request_id, sequence, audio_time_ms,
        frame_id, width, height, *bounds, *timings, output_mode.wire,
    )  # fmt: skip
    return fixed + image


def encode_video_config(
    request_id: int, codec: VideoCodec, codec_string: str, width: int, height: int, description: bytes
) -> bytes:
    """VIDEO_CONFIG of video session ``request_id``: the decoder configuration for the key frame that
    follows. Raises ValueError for a codec string that is not 1-255 ASCII characters."""
    text = codec_string.encode("ascii", "replace")
    if not 0 < len(text) <= MAX_CODEC_STRING_LENGTH:
        raise ValueError(f"a codec string is 1-{MAX_CODEC_STRING_LENGTH} ASCII characters")
    fixed = VIDEO_CONFIG_FIXED.pack(VERSION, VIDEO_CONFIG, 0, request_id, codec, len(text), width, height)
    return fixed + text + description


def encode_video_chunk(
    request_id: int,
    sequence: int,
    audio_time_ms: float,
    key_frame: bool,
    end_of_utterance: bool,
    frame_id: int,
    bounds: tuple[int, int, int, int],
    data: bytes | memoryview,
) -> bytes:
    """VIDEO_CHUNK, one encoded frame of video session ``request_id``, the encoder's bytes unchanged."""
    flags = (FLAG_KEY_FRAME if key_frame else 0) | (FLAG_CHUNK_END_OF_UTTERANCE if end_of_utterance else 0)
    fixed = VIDEO_CHUNK_FIXED.pack(
        VERSION, VIDEO_CHUNK, flags, request_id, sequence, audio_time_ms, frame_id, *bounds
    )
    return fixed + data


def encode_error(request_id: int, code: str, message: str) -> bytes:
    """ERROR for ``request_id`` (0 when the bad message's id could not be read). ``code`` is a gRPC
    status name other than OK; the message is cut to MAX_ERROR_MESSAGE_BYTES."""
    if code == "OK":
        raise ValueError("an ERROR cannot carry status OK")
    return _encode_status(ERROR, request_id, code, message)


def encode_session_end(request_id: int, code: str = "OK", message: str = "") -> bytes:
    """SESSION_END for session ``request_id``: OK after a normal end, else the status that ended it."""
    return _encode_status(SESSION_END, request_id, code, message)


def _encode_status(kind: int, request_id: int, code: str, message: str) -> bytes:
    number = GRPC_STATUS_CODES.get(code)
    if number is None:
        raise ValueError(f"{code!r} is not a gRPC status name")
    text = message.encode("utf-8", "replace")
    if len(text) > MAX_ERROR_MESSAGE_BYTES:
        # Cut on a character boundary so the text stays valid UTF-8.
        text = text[:MAX_ERROR_MESSAGE_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return STATUS_FIXED.pack(VERSION, kind, 0, request_id, number) + text


# --- shared ---------------------------------------------------------------------------------------


def read_header(data: bytes) -> tuple[int, int, int]:
    """The type, flags and request id of a message whose version byte is ours; raise ProtocolError
    for anything else."""
    if len(data) < HEADER.size:
        raise ProtocolError(
            f"a {SUBPROTOCOL} message starts with an {HEADER.size}-byte header; got {len(data)} bytes"
        )
    if data[0] != VERSION:
        raise ProtocolError(f"not a {SUBPROTOCOL} message: version byte {data[0]}, expected {VERSION}")
    _, kind, flags, request_id = HEADER.unpack_from(data)
    return kind, flags, request_id


def need(data: bytes, size: int, name: str, rid: int) -> None:
    if len(data) < size:
        raise ProtocolError(f"{name} is truncated: {len(data)} bytes, needs {size}+", request_id=rid)


def _exact(data: bytes, size: int, name: str, rid: int) -> None:
    if len(data) != size:
        raise ProtocolError(f"{name} must be exactly {size} bytes, got {len(data)}", request_id=rid)


# --- the server messages' classes (a client's side) -----------------------------------------------


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


# --- client messages, written by a client ---------------------------------------------------------


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


# --- server messages, read by a client ------------------------------------------------------------


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
