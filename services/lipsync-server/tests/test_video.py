"""The crop window's geometry, codec negotiation and the encoder's promises (video.py)."""

from __future__ import annotations

import re

import av
import cv2
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsync_server.video import (
    VideoCodec,
    VideoEncoder,
    available_codecs,
    composite_window,
    crop_size,
    crop_window,
    i420_frame,
    negotiate,
)


def test_the_crop_size_is_the_largest_box_rounded_up_to_the_block() -> None:
    boxes = [[10, 10, 190, 200], [0, 0, 170, 210]]

    assert crop_size(boxes, 1280, 720, 16) == (192, 224)
    assert crop_size(boxes, 1280, 720, 64) == (192, 256)


def test_the_crop_size_never_exceeds_the_frame_and_stays_even() -> None:
    assert crop_size([[0, 0, 101, 99]], 101, 99, 64) == (100, 98)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.data())
def test_the_window_holds_the_box_and_stays_inside_the_frame(data: st.DataObject) -> None:
    width, height = data.draw(st.integers(64, 1920)), data.draw(st.integers(64, 1080))
    x1 = data.draw(st.integers(0, width - 1))
    y1 = data.draw(st.integers(0, height - 1))
    box = (x1, y1, data.draw(st.integers(x1 + 1, width)), data.draw(st.integers(y1 + 1, height)))
    size = crop_size([box], width, height, data.draw(st.sampled_from([16, 64])))

    left, top, right, bottom = crop_window(box, size, width, height)

    assert (right - left, bottom - top) == size
    assert 0 <= left <= right <= width
    assert 0 <= top <= bottom <= height
    if size[0] >= box[2] - box[0]:
        assert left <= box[0]
        assert box[2] <= right
    if size[1] >= box[3] - box[1]:
        assert top <= box[1]
        assert box[3] <= bottom


def test_the_window_is_the_composited_frame_cut_at_the_window() -> None:
    base = np.arange(40 * 60 * 3, dtype=np.uint32).astype(np.uint8).reshape(40, 60, 3)
    before = base.copy()
    region = np.full((10, 20, 3), 7, np.uint8)
    box = (30, 15, 50, 25)
    full = base.copy()
    full[15:25, 30:50] = region
    window = crop_window(box, (32, 16), 60, 40)

    pixels = composite_window(base, window, box, region)

    assert np.array_equal(pixels, full[window[1] : window[3], window[0] : window[2]])
    assert np.array_equal(base, before), "the base frame is not written to"


def test_the_server_prefers_its_own_order_among_the_codecs_offered() -> None:
    available = (VideoCodec.H264, VideoCodec.VP8, VideoCodec.VP9)

    assert negotiate([VideoCodec.VP9, VideoCodec.H264], available) == VideoCodec.H264
    assert negotiate([VideoCodec.VP9], available) == VideoCodec.VP9
    assert negotiate([VideoCodec.AV1], available) is None
    assert negotiate([], available) is None


def test_this_pyav_build_encodes_every_codec() -> None:
    assert set(available_codecs()) == set(VideoCodec)


@pytest.mark.parametrize(("codec", "decoder"), [(VideoCodec.H264, "h264"), (VideoCodec.VP8, "vp8")])
def test_each_frame_gives_one_chunk_at_once_and_a_key_frame_when_asked(
    codec: VideoCodec, decoder: str
) -> None:
    encoder = VideoEncoder(codec, 64, 48, 25.0)
    context = av.CodecContext.create(decoder, "r")
    assert isinstance(context, VideoCodecContext)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    keys = []
    for index in range(12):
        chunk = encoder.encode(np.roll(image, index, axis=1), index * 40.0, key_frame=index == 7)
        keys.append(chunk.key_frame)
        assert len(context.decode(av.Packet(chunk.data))) == 1

    assert [i for i, key in enumerate(keys) if key] == [0, 7]


def test_the_i420_frame_holds_opencvs_conversion_of_the_pixels() -> None:
    bgr = np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)

    frame = i420_frame(bgr)

    assert (frame.width, frame.height, frame.format.name) == (64, 48, "yuv420p")
    assert np.array_equal(frame.to_ndarray(), cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))


def x264_settings(data: bytes) -> dict[str, str]:
    """The settings x264 writes into its first frame's SEI message ("options: name=value ...")."""
    found = re.search(rb"options: ([ -~]*)", data)
    assert found is not None, "no x264 settings in the stream"
    return dict(option.split("=", 1) for option in found.group(1).decode().split() if "=" in option)


def test_a_sessions_h264_stream_has_a_constant_quantizer_and_the_cheap_analysis_on_one_thread() -> None:
    image = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)

    settings = x264_settings(VideoEncoder(VideoCodec.H264, 64, 48, 25.0).encode(image, 0.0).data)

    assert (settings["rc"], settings["qp"]) == ("cqp", "22")
    assert (settings["scenecut"], settings["subme"], settings["threads"]) == ("0", "0", "1")


def test_an_h264_stream_under_a_bitrate_cap_has_a_rate_factor_the_cap_holds() -> None:
    image = np.random.default_rng(4).integers(0, 255, (48, 64, 3), dtype=np.uint8)

    encoder = VideoEncoder(VideoCodec.H264, 64, 48, 25.0, max_bitrate=500_000)
    settings = x264_settings(encoder.encode(image, 0.0).data)

    assert (settings["rc"], settings["crf"], settings["vbv_maxrate"]) == ("crf", "20.0", "500")
