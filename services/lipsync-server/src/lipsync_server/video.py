"""Video output: a session's face region as one encoded video stream (PyAV), instead of a JPEG per frame.

Only the mouth region changes from frame to frame, so a session encodes a fixed-size crop window
around each frame's face box; the browser decodes the model's base video itself and draws each decoded
crop at its window. The window's size is fixed per package (the largest face box, rounded up to the
codec's block size) so one encoder serves the whole session; its place follows the face box.

An encoder is made per session and used from one worker thread at a time. It is tuned for live
delivery: no B-frames and no look-ahead (each frame's chunk leaves as soon as the frame is encoded), a
key frame at the start, on request and at least every `KEY_FRAME_INTERVAL_S`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext
from numpy.typing import NDArray

#: A key frame at least this often, so a viewer that joins or lost a chunk without asking recovers.
KEY_FRAME_INTERVAL_S = 4.0


class VideoCodec(enum.IntEnum):
    """The codecs a session may ask for; the numbers are the proto's ``VideoCodec``."""

    H264 = 1
    VP8 = 2
    VP9 = 3
    AV1 = 4


@dataclass(frozen=True)
class CodecSpec:
    """How the server encodes one codec: PyAV's encoder, its options, and what WebCodecs needs."""

    codec: VideoCodec
    encoder: str
    #: The WebCodecs codec string of the stream this encoder makes.
    codec_string: str
    #: Frame sizes are multiples of this (the codec's macroblock or superblock edge).
    block: int
    options: dict[str, str]
    #: Constant-quality setting of a session's stream; lower is better quality and more bits.
    quality_option: tuple[str, str]
    #: The constant-quality setting under a bit-rate cap (the base video's), where the codec caps
    #: another kind of quality setting than the session's; None: the same.
    capped_quality_option: tuple[str, str] | None = None
    #: Whether the encoder reads a rate cap from the bit rate (libvpx, in constant-quality mode) rather
    #: than from maxrate alone; SVT-AV1 refuses a bit rate outside its VBR and CBR modes.
    cap_from_bit_rate: bool = False


# Measured on the demo avatar's face region (loadtests/bench_video.py): equal quality, bits and CPU.
CODECS: dict[VideoCodec, CodecSpec] = {
    VideoCodec.H264: CodecSpec(
        VideoCodec.H264,
        "libx264",
        # Constrained Baseline, level 3.1: what every WebCodecs decoder takes, Safari's included.
        "avc1.42e01f",
        16,
        {
            "preset": "superfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "level": "3.1",
            # A key frame asked for is an IDR frame, where a decoder may start.
            "forced-idr": "1",
            # Key frames come at the start, on request and at the interval; looking for scene cuts
            # would cost an analysis of every frame at a quarter of its size. A face in a window that
            # follows it moves little: a whole-pixel motion search costs a few more bits than a
            # sub-pixel one, and much less CPU.
            "x264-params": "scenecut=0:subme=0",
        },
        # A constant quantizer needs no estimate of each frame's complexity (a rate factor does, from
        # that same quarter-size analysis), and where little changes it spends fewer bits on the same
        # quality. x264 caps only a rate factor, so the base video keeps one.
        ("qp", "22"),
        ("crf", "20"),
    ),
    VideoCodec.VP8: CodecSpec(
        VideoCodec.VP8,
        "libvpx",
        "vp8",
        16,
        {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"},
        ("crf", "10"),
        cap_from_bit_rate=True,
    ),
    VideoCodec.VP9: CodecSpec(
        VideoCodec.VP9,
        "libvpx-vp9",
        "vp09.00.10.08",
        64,
        {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "row-mt": "0"},
        ("crf", "40"),
        cap_from_bit_rate=True,
    ),
    VideoCodec.AV1: CodecSpec(
        VideoCodec.AV1,
        "libsvtav1",
        "av01.0.04M.08",
        64,
        {"preset": "12", "svtav1-params": "lp=1:pred-struct=1"},
        ("crf", "40"),
    ),
}

#: The server's order of preference among the codecs a client offers (see docs/performance.md).
PREFERENCE: tuple[VideoCodec, ...] = (VideoCodec.H264, VideoCodec.VP8, VideoCodec.VP9, VideoCodec.AV1)


def available_codecs() -> tuple[VideoCodec, ...]:
    """The codecs whose encoder this PyAV build carries, in the server's order of preference."""
    found = []
    for codec in PREFERENCE:
        try:
            av.codec.Codec(CODECS[codec].encoder, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        found.append(codec)
    return tuple(found)


def negotiate(offered: Sequence[int], available: Sequence[VideoCodec]) -> VideoCodec | None:
    """The server's preferred codec among those the client offered; None when there is none."""
    for codec in available:
        if codec in offered:
            return codec
    return None


def crop_size(
    boxes: NDArray[np.integer] | Sequence[Sequence[int]], frame_width: int, frame_height: int, block: int
) -> tuple[int, int]:
    """The fixed size of a package's crop window: its largest face box rounded up to `block`, never
    larger than the frame (then rounded down to even, as 4:2:0 chroma needs)."""
    array = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    width = int((array[:, 2] - array[:, 0]).max(initial=1))
    height = int((array[:, 3] - array[:, 1]).max(initial=1))
    return (
        min(-(-width // block) * block, frame_width - frame_width % 2),
        min(-(-height // block) * block, frame_height - frame_height % 2),
    )


def crop_window(
    box: Sequence[int], size: tuple[int, int], frame_width: int, frame_height: int
) -> tuple[int, int, int, int]:
    """The window of `size` that holds the face `box`, centred on it and kept inside the frame."""
    x1, y1, x2, y2 = (int(v) for v in box)
    width, height = size
    left = min(max(x1 - (width - (x2 - x1)) // 2, 0), frame_width - width)
    top = min(max(y1 - (height - (y2 - y1)) // 2, 0), frame_height - height)
    return left, top, left + width, top + height


def composite_window(
    base: NDArray[np.uint8],
    window: tuple[int, int, int, int],
    box: Sequence[int],
    region: NDArray[np.uint8],
) -> NDArray[np.uint8]:
    """The pixels of `window` in the composited frame: the base frame with `region` pasted at `box`
    (the part of the box outside the window is left out)."""
    wx1, wy1, wx2, wy2 = window
    x1, y1, x2, y2 = (int(v) for v in box)
    out = base[wy1:wy2, wx1:wx2].copy()
    ix1, iy1, ix2, iy2 = max(x1, wx1), max(y1, wy1), min(x2, wx2), min(y2, wy2)
    if ix1 < ix2 and iy1 < iy2:
        out[iy1 - wy1 : iy2 - wy1, ix1 - wx1 : ix2 - wx1] = region[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1]
    return out


def i420_frame(bgr: NDArray[np.uint8]) -> av.VideoFrame:
    """BGR pixels (H×W×3, both even) as an encoder's input: converted by OpenCV, whose output the
    frame uses as its planes, uncopied (swscale's conversion and a copy into PyAV's own planes cost
    several times as much)."""
    i420 = cast(NDArray[np.uint8], cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))
    return av.VideoFrame.from_numpy_buffer(i420, format="yuv420p")


@dataclass(frozen=True)
class EncodedChunk:
    data: bytes
    key_frame: bool


class VideoEncoder:
    """One session's encoder: BGR frames of one size in, one chunk per frame out, at once."""

    def __init__(
        self,
        codec: VideoCodec,
        width: int,
        height: int,
        fps: float,
        quality: str | None = None,
        *,
        key_frame_interval_s: float = KEY_FRAME_INTERVAL_S,
        max_bitrate: int | None = None,
        threads: int = 1,
    ) -> None:
        """`quality` replaces the codec's constant-quality default; `max_bitrate` (bits/s) caps the
        rate; `threads` 0 lets the encoder use every core (a session's encoder uses one)."""
        spec = CODECS[codec]
        self.spec = spec
        self.width = width
        self.height = height
        context = self._context = cast(VideoCodecContext, av.CodecContext.create(spec.encoder, "w"))
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        # OpenCV's conversion is BT.601 limited range; saying so in the stream makes browsers convert
        # back with the same matrix (they guess otherwise, and a guess of BT.709 shifts every colour).
        context.colorspace = 6  # AVCOL_SPC_SMPTE170M
        context.color_primaries = 6  # AVCOL_PRI_SMPTE170M
        context.color_trc = 6  # AVCOL_TRC_SMPTE170M
        context.color_range = 1  # AVCOL_RANGE_MPEG, limited
        context.time_base = Fraction(1, 1000)
        context.framerate = Fraction(fps).limit_denominator(1001)
        context.gop_size = max(1, round(key_frame_interval_s * fps))
        context.max_b_frames = 0
        context.thread_count = threads
        name, default = (
            spec.quality_option if max_bitrate is None else spec.capped_quality_option or spec.quality_option
        )
        options = {**spec.options, name: quality or default}
        if max_bitrate is not None:
            if spec.cap_from_bit_rate:
                context.bit_rate = max_bitrate
            options.update(maxrate=str(max_bitrate), bufsize=str(2 * max_bitrate))
        context.options = options
        context.open()
        self._frames = 0

    def encode(self, bgr: NDArray[np.uint8], time_ms: float, *, key_frame: bool = False) -> EncodedChunk:
        """Encode one frame (H×W×3 BGR of the encoder's size); a key frame when asked."""
        return self.encode_frame(i420_frame(bgr), time_ms, key_frame=key_frame)

    def encode_frame(self, frame: av.VideoFrame, time_ms: float, *, key_frame: bool = False) -> EncodedChunk:
        """Encode one I420 frame of the encoder's size (`i420_frame`). Raises RuntimeError if the
        encoder holds the frame back (it is set up never to)."""
        frame.pts = round(time_ms)
        if key_frame or self._frames == 0:
            frame.pict_type = av.video.frame.PictureType.I
        self._frames += 1
        packets = self._context.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"{self.spec.encoder} returned {len(packets)} packets for one frame")
        packet = packets[0]
        return EncodedChunk(bytes(packet), bool(packet.is_keyframe))
