"""The seed's binary messages, used when a client offers no subprotocol: two request layouts on one
connection, each answered in its own layout.

* The README's layout (the seed README's promise): request ``[u8 name_len][name][u32 frame_id]``,
  exactly ``1 + name_len + 4`` bytes; the reply is the bare JPEG of the full lip-synced frame.
* The code's layout (what the seed's Go proxy ran, and its ``realtime-lipsync-binary.html`` speaks):
  request ``[u32 name_len][name][u32 frame_id][u32 audio_len][audio]``; the reply is
  ``[u8 1][u32 frame_id][u32 processing_ms][u32 image_len][image][u32 bounds_bytes][f32 x bounds]``,
  the image being the face crop and the bounds ``[x1, y1, x2, y2]`` where it goes in the full frame.
  After the JSON ``switch_to_binary`` a ``get_video_frame`` is answered by the binary
  ``[u8 2][u32 frame_id][u8 video_type_len][video_type][u32 data_len][jpeg]``.

Integers are little-endian. The two requests are told apart by shape: a message of exactly
``1 + data[0] + 4`` bytes is the README's (a code-layout request is at least ``name_len + 12`` bytes,
so never that long), else one whose bytes 1-3 are zero (a ``u32 name_len`` below 256) and that has
the code layout's 12 bytes of lengths and frame id is the code's. Anything else is refused as the
README layout it most likely meant to be. A failure reply is the text message
:func:`lipsync_protocol.json_messages.error_reply`, whatever the layout.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID, MAX_MODEL_NAME_BYTES, check_frame_id, decode_model_name

U32 = struct.Struct("<I")
FRAME_ID = U32
#: The shortest valid README request: a one-byte name.
MIN_REQUEST_SIZE = 1 + 1 + FRAME_ID.size
#: The code layout's fixed part: name length, frame id, audio length.
CODE_HEADER_SIZE = 3 * U32.size
CROP_HEAD = struct.Struct("<BIII")
VIDEO_HEAD = struct.Struct("<BIB")
#: The first byte of the code layout's replies.
CROP_REPLY = 1
VIDEO_FRAME = 2
#: The code layout's audio the proxy understands (by its length): the 16 chunks of 40 ms around a
#: frame (8 before its own, 7 after), PCM16 mono; 1,920-byte chunks are the seed page's 24 kHz capture.
AUDIO_WINDOW_CHUNKS = 16
AUDIO_RATES = {AUDIO_WINDOW_CHUNKS * 1_280: 16_000, AUDIO_WINDOW_CHUNKS * 1_920: 24_000}


@dataclass(frozen=True, slots=True)
class FrameRequest:
    """The README's layout: one lip-synced full frame of ``model_name``."""

    model_name: str
    frame_id: int


@dataclass(frozen=True, slots=True)
class CropRequest:
    """The code's layout: the face crop of one frame and its bounds, with the client's ``audio``."""

    model_name: str
    frame_id: int
    audio: bytes = b""

    @property
    def sample_rate(self) -> int | None:
        """The rate of ``audio`` when it is a window the proxy understands (see ``AUDIO_RATES``), else
        None: the audio is then ignored, as the seed ignored all of it."""
        return AUDIO_RATES.get(len(self.audio))

    @property
    def center_sample(self) -> int:
        """The frame's instant in ``audio``: the middle of the frame's own chunk, the ninth of 16."""
        return (len(self.audio) // 2) * 17 // (2 * AUDIO_WINDOW_CHUNKS)


V1Request = FrameRequest | CropRequest


def decode_request(data: bytes) -> V1Request:
    """Parse a v1 binary request of either layout (told apart as the module says); raise
    ProtocolError unless it is well-formed: a non-empty UTF-8 name and a frame id below 2**31 (the
    server's ids are int32)."""
    if len(data) >= MIN_REQUEST_SIZE and len(data) == 1 + data[0] + FRAME_ID.size:
        name_len = data[0]
        model_name = decode_model_name(data[1 : 1 + name_len], None)
        (frame_id,) = FRAME_ID.unpack_from(data, 1 + name_len)
        return FrameRequest(model_name, check_frame_id(frame_id, None))
    if len(data) >= CODE_HEADER_SIZE and data[1:4] == b"\0\0\0":
        return _decode_crop_request(data)
    if len(data) < MIN_REQUEST_SIZE:
        raise ProtocolError(
            f"v1 request must be [u8 name_len][name][u32 frame_id LE], at least {MIN_REQUEST_SIZE} bytes; "
            f"got {len(data)}"
        )
    raise ProtocolError(
        f"v1 request with name_len {data[0]} must be exactly {1 + data[0] + FRAME_ID.size} bytes, "
        f"got {len(data)}"
    )


def _decode_crop_request(data: bytes) -> CropRequest:
    name_len = data[0]
    frame_at = U32.size + name_len
    if len(data) < frame_at + 2 * U32.size:
        raise ProtocolError(
            f"v1 request [u32 name_len][name][u32 frame_id][u32 audio_len][audio] with name_len {name_len} "
            f"needs at least {frame_at + 2 * U32.size} bytes, got {len(data)}"
        )
    model_name = decode_model_name(data[U32.size : frame_at], None)
    frame_id, audio_len = struct.unpack_from("<II", data, frame_at)
    audio_at = frame_at + 2 * U32.size
    if len(data) != audio_at + audio_len:
        raise ProtocolError(
            f"v1 request with name_len {name_len} and audio_len {audio_len} must be exactly "
            f"{audio_at + audio_len} bytes, got {len(data)}"
        )
    return CropRequest(model_name, check_frame_id(frame_id, None), bytes(data[audio_at:]))


def encode_crop_reply(
    frame_id: int, processing_ms: float, image: bytes | memoryview, bounds: tuple[float, ...]
) -> bytes:
    """The code layout's reply; ``processing_ms`` is rounded (and clamped) into its u32."""
    ms = min(max(round(processing_ms), 0), 0xFFFF_FFFF) if math.isfinite(processing_ms) else 0
    head = CROP_HEAD.pack(CROP_REPLY, frame_id, ms, len(image))
    tail = U32.pack(4 * len(bounds)) + struct.pack(f"<{len(bounds)}f", *bounds)
    return b"".join((head, image, tail))


def encode_video_frame(frame_id: int, video_type: str, image: bytes | memoryview) -> bytes:
    """The binary answer to ``get_video_frame`` on a connection that sent ``switch_to_binary``."""
    kind = video_type.encode("utf-8")
    return b"".join((VIDEO_HEAD.pack(VIDEO_FRAME, frame_id, len(kind)), kind, U32.pack(len(image)), image))


# --- a client's side: requests written, the code layout's replies read ----------------------------


@dataclass(frozen=True, slots=True)
class CropReply:
    """The code layout's reply: a face crop JPEG, its bounds and the proxy's processing time."""

    frame_id: int
    processing_ms: int
    image: bytes
    bounds: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """The code layout's binary answer to ``get_video_frame`` after ``switch_to_binary``."""

    frame_id: int
    video_type: str
    image: bytes


def encode_request(request: V1Request) -> bytes:
    """The wire bytes of ``request`` in its layout; raises ValueError when it cannot be a valid one."""
    name = request.model_name.encode("utf-8")
    if not 0 < len(name) <= MAX_MODEL_NAME_BYTES:
        raise ValueError(f"model name must be 1-{MAX_MODEL_NAME_BYTES} UTF-8 bytes, got {len(name)}")
    if not 0 <= request.frame_id <= MAX_FRAME_ID:
        raise ValueError(f"frame_id must be in [0, {MAX_FRAME_ID}], got {request.frame_id}")
    if isinstance(request, CropRequest):
        return (
            U32.pack(len(name))
            + name
            + struct.pack("<II", request.frame_id, len(request.audio))
            + request.audio
        )
    return bytes((len(name),)) + name + FRAME_ID.pack(request.frame_id)


def decode_crop_reply(data: bytes) -> CropReply:
    """Parse the code layout's reply (what the seed's page reads); raise ProtocolError if malformed."""
    if len(data) < CROP_HEAD.size + U32.size or data[0] != CROP_REPLY:
        raise ProtocolError(f"a crop reply starts with byte {CROP_REPLY} and has at least 17 bytes")
    _, frame_id, processing_ms, image_len = CROP_HEAD.unpack_from(data)
    bounds_at = CROP_HEAD.size + image_len
    if len(data) < bounds_at + U32.size:
        raise ProtocolError(f"a crop reply with image_len {image_len} is cut short at {len(data)} bytes")
    (bounds_bytes,) = U32.unpack_from(data, bounds_at)
    if bounds_bytes % 4 or len(data) != bounds_at + U32.size + bounds_bytes:
        raise ProtocolError(f"a crop reply's bounds_bytes {bounds_bytes} does not match its length")
    bounds = struct.unpack_from(f"<{bounds_bytes // 4}f", data, bounds_at + U32.size)
    return CropReply(frame_id, processing_ms, bytes(data[CROP_HEAD.size : bounds_at]), bounds)


def decode_video_frame(data: bytes) -> VideoFrame:
    """Parse the binary ``get_video_frame`` answer; raise ProtocolError if malformed."""
    if len(data) < VIDEO_HEAD.size or data[0] != VIDEO_FRAME:
        raise ProtocolError(f"a binary video frame starts with byte {VIDEO_FRAME} and has at least 6 bytes")
    _, frame_id, kind_len = VIDEO_HEAD.unpack_from(data)
    image_at = VIDEO_HEAD.size + kind_len + U32.size
    if len(data) < image_at:
        raise ProtocolError("a binary video frame is cut short in its video_type")
    try:
        video_type = bytes(data[VIDEO_HEAD.size : VIDEO_HEAD.size + kind_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("a binary video frame's video_type is not UTF-8") from None
    (image_len,) = U32.unpack_from(data, image_at - U32.size)
    if len(data) != image_at + image_len:
        raise ProtocolError(f"a binary video frame's data_len {image_len} does not match its length")
    return VideoFrame(frame_id, video_type, bytes(data[image_at:]))
