"""Speak sessions with video output and play sessions, against the real server with the demo avatar."""

from __future__ import annotations

import queue
import struct
from collections.abc import Iterator

import av
import cv2
import grpc
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext
from numpy.typing import NDArray
from server_process import TIME_UNIT, ServerProcess

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

pytestmark = pytest.mark.integration
DECODERS = {pb.VIDEO_CODEC_H264: "h264", pb.VIDEO_CODEC_VP8: "vp8", pb.VIDEO_CODEC_VP9: "vp9"}
# The demo has 300 frames; a play session from here lasts 1.2 s.
LATE_START = 270


@pytest.fixture(scope="module")
def stub(demo_server: ServerProcess) -> Iterator[lipsync_pb2_grpc.LipSyncStub]:
    with grpc.insecure_channel(demo_server.address) as channel:
        yield lipsync_pb2_grpc.LipSyncStub(channel)


def play(stub: lipsync_pb2_grpc.LipSyncStub, **start: object) -> list[pb.SpeakResponse]:
    request = pb.SpeakRequest(start=pb.SpeakStart(model_name="demo", play=True, **start))  # type: ignore[arg-type]
    return list(stub.Speak(iter([request]), timeout=30 * TIME_UNIT))


def jpeg(data: bytes) -> NDArray[np.uint8]:
    return np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), dtype=np.uint8)


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255**2 / mse))


def decoder(codec: int) -> VideoCodecContext:
    context = av.CodecContext.create(DECODERS[codec], "r")
    assert isinstance(context, VideoCodecContext)
    return context


def test_a_play_session_delivers_every_frame_of_the_track_as_h264_after_its_config(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    responses = play(stub, start_frame_id=LATE_START, video_codecs=[pb.VIDEO_CODEC_H264])

    frame_ids = [r.video_chunk.frame_id for r in responses]
    # A frame the loaded machine renders more than an interval late is dropped; the first and the
    # last never are.
    assert frame_ids == sorted(set(frame_ids))
    assert (frame_ids[0], frame_ids[-1]) == (LATE_START, 299)
    assert len(frame_ids) >= 20
    first = responses[0]
    assert first.HasField("video_config")
    assert first.video_config.codec == pb.VIDEO_CODEC_H264
    assert first.video_config.codec_string == "avc1.42e01f"
    assert first.video_chunk.key_frame
    assert not any(r.HasField("video_config") for r in responses[1:])
    assert not any(r.HasField("frame") for r in responses)
    assert [r.end_of_utterance for r in responses][-2:] == [False, True]
    assert [r.audio_time_ms for r in responses] == pytest.approx([i * 40 for i in frame_ids])
    width, height = first.video_config.width, first.video_config.height
    assert width % 16 == 0
    assert height % 16 == 0
    for response in responses:
        box = response.video_chunk.bounds
        assert (box.x2 - box.x1, box.y2 - box.y1) == (width, height)
        assert 0 <= box.x1 <= box.x2 <= 1280
        assert 0 <= box.y1 <= box.y2 <= 720


@pytest.mark.parametrize("codec", [pb.VIDEO_CODEC_H264, pb.VIDEO_CODEC_VP8, pb.VIDEO_CODEC_VP9])
def test_the_decoded_crop_over_the_base_frame_matches_the_servers_jpeg_composite(
    stub: lipsync_pb2_grpc.LipSyncStub, codec: int
) -> None:
    responses = play(stub, start_frame_id=LATE_START, video_codecs=[codec])
    context = decoder(codec)
    scores = []
    decoded = {}
    for response in responses:
        frames = context.decode(av.Packet(response.video_chunk.data))
        assert len(frames) == 1, "the decoder needs no chunk after this one"
        decoded[response.video_chunk.frame_id] = (frames[0].to_ndarray(format="bgr24"), response.video_chunk)
    for frame_id in sorted(decoded)[::6]:  # a frame the loaded machine made late is dropped
        pixels, chunk = decoded[frame_id]
        infer = stub.Infer(pb.InferRequest(model_name="demo", frame_id=frame_id), timeout=10 * TIME_UNIT)
        full = jpeg(infer.image)
        face = infer.bounds
        window = chunk.bounds
        ours = pixels[face.y1 - window.y1 : face.y2 - window.y1, face.x1 - window.x1 : face.x2 - window.x1]
        scores.append(psnr(ours, full[face.y1 : face.y2, face.x1 : face.x2]))
    # docs/performance.md reports the page's figure (target 35 dB); here a floor that finds a misplaced
    # window, a colour-matrix mix-up or a stale frame (each well under 25 dB).
    assert min(scores) > 32, scores


def test_a_key_frame_request_gets_a_config_and_a_key_frame_next(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    requests: queue.Queue[pb.SpeakRequest | None] = queue.Queue()
    requests.put(
        pb.SpeakRequest(
            start=pb.SpeakStart(
                model_name="demo", play=True, start_frame_id=200, video_codecs=[pb.VIDEO_CODEC_H264]
            )
        )
    )
    call = stub.Speak(iter(requests.get, None), timeout=30 * TIME_UNIT)
    seen = []
    try:
        for response in call:
            seen.append(response)
            if len(seen) == 5:
                requests.put(
                    pb.SpeakRequest(control=pb.SpeakControl(action=pb.SpeakControl.ACTION_KEY_FRAME))
                )
            if len(seen) == 25:
                break
    finally:
        call.cancel()
        requests.put(None)
    keyed = [i for i, r in enumerate(seen) if r.HasField("video_config")]
    assert keyed[0] == 0
    assert len(keyed) == 2, keyed
    assert 5 <= keyed[1] < 15
    assert seen[keyed[1]].video_chunk.key_frame
    assert [r.video_chunk.key_frame for r in seen].count(True) == 2, "the interval is longer than 1 s"


def test_a_session_offering_only_codecs_the_server_lacks_gets_jpeg_frames(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    responses = play(stub, start_frame_id=290, video_codecs=[99], output_mode=pb.OUTPUT_MODE_FACE_CROP)

    assert [r.frame.frame_id for r in responses][-1] == 299
    assert all(r.frame.image[:2] == b"\xff\xd8" for r in responses)
    assert not any(r.HasField("video_chunk") or r.HasField("video_config") for r in responses)


def test_a_speak_session_with_video_turns_audio_into_chunks(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    audio = (np.sin(np.arange(16_000 * 0.4) / 16_000 * 2 * np.pi * 220) * 20_000).astype("<i2").tobytes()
    messages = [pb.SpeakRequest(start=pb.SpeakStart(model_name="demo", video_codecs=[pb.VIDEO_CODEC_VP8]))]
    messages.append(pb.SpeakRequest(audio=audio))
    messages.append(pb.SpeakRequest(control=pb.SpeakControl(action=pb.SpeakControl.ACTION_END)))

    responses = list(stub.Speak(iter(messages), timeout=30 * TIME_UNIT))

    # Chunks are numbered without gaps; a frame the loaded machine dropped shows in the audio time.
    assert [r.sequence for r in responses] == list(range(len(responses)))
    assert responses[-1].audio_time_ms == pytest.approx(9 * 40)
    assert responses[0].video_config.codec_string == "vp8"
    assert all(r.HasField("video_chunk") for r in responses)
    context = decoder(pb.VIDEO_CODEC_VP8)
    assert all(len(context.decode(av.Packet(r.video_chunk.data))) == 1 for r in responses)
    assert responses[-1].end_of_utterance


def test_a_play_session_refuses_audio(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    messages = [
        pb.SpeakRequest(start=pb.SpeakStart(model_name="demo", play=True, start_frame_id=0)),
        pb.SpeakRequest(audio=b"\x00\x00"),
    ]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Speak(iter(messages), timeout=30 * TIME_UNIT))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes none" in str(caught.value.details())


def test_a_frame_due_while_the_caller_has_no_credit_is_dropped_not_queued(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    responses = play(stub, start_frame_id=LATE_START, video_codecs=[pb.VIDEO_CODEC_H264], credits=3)

    assert [r.video_chunk.frame_id for r in responses] == [LATE_START, LATE_START + 1, LATE_START + 2]


def test_credits_granted_later_let_frames_through_again_from_a_decodable_point(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    requests: queue.Queue[pb.SpeakRequest | None] = queue.Queue()
    start = pb.SpeakStart(
        model_name="demo", play=True, start_frame_id=LATE_START, video_codecs=[pb.VIDEO_CODEC_H264], credits=1
    )
    requests.put(pb.SpeakRequest(start=start))
    call = stub.Speak(iter(requests.get, None), timeout=30 * TIME_UNIT)
    seen = []
    try:
        for response in call:
            seen.append(response)
            requests.put(pb.SpeakRequest(credit=1))
    finally:
        requests.put(None)
    context = decoder(pb.VIDEO_CODEC_H264)
    assert len(seen) >= 10
    assert all(len(context.decode(av.Packet(r.video_chunk.data))) == 1 for r in seen)
    assert seen[-1].video_chunk.frame_id == 299


def base_video(stub: lipsync_pb2_grpc.LipSyncStub, **fields: object) -> list[pb.GetBaseVideoResponse]:
    request = pb.GetBaseVideoRequest(model_name="demo", **fields)  # type: ignore[arg-type]
    return list(stub.GetBaseVideo(request, timeout=120 * TIME_UNIT))


def test_the_base_video_is_every_base_frame_in_h264_under_the_bitrate_cap(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    pieces = base_video(stub, codec=pb.VIDEO_CODEC_H264)
    data = b"".join(piece.data for piece in pieces)

    assert pieces[0].size == len(data)
    magic, version, codec, text_len, _, width, height, fps, count = struct.unpack_from("<4sBBBBHHfI", data)
    assert (magic, version, codec, width, height, fps, count) == (b"LSBV", 1, 1, 1280, 720, 25.0, 300)
    assert data[20 : 20 + text_len] == b"avc1.42e01f"
    assert len(data) * 8 / (count / fps) <= 1_500_000
    context = decoder(pb.VIDEO_CODEC_H264)
    offset, keys, frames = 20 + text_len, [], []
    while offset < len(data):
        size, flags = struct.unpack_from("<IB", data, offset)
        keys.append(bool(flags & 1))
        (frame,) = context.decode(av.Packet(data[offset + 5 : offset + 5 + size]))
        frames.append(frame)
        offset += 5 + size
    assert len(frames) == 300
    assert [i for i, key in enumerate(keys) if key] == list(range(0, 300, 25))
    reply = stub.GetVideoFrame(
        pb.GetVideoFrameRequest(model_name="demo", frame_id=100), timeout=10 * TIME_UNIT
    )
    assert psnr(frames[100].to_ndarray(format="bgr24"), jpeg(reply.image)) > 32


def test_the_base_video_is_not_sent_again_to_a_caller_that_has_it(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    etag = base_video(stub, codec=pb.VIDEO_CODEC_H264)[0].etag

    (reply,) = base_video(stub, codec=pb.VIDEO_CODEC_H264, if_none_match=etag)

    assert reply.not_modified
    assert (reply.etag, reply.data) == (etag, b"")
    assert base_video(stub, codec=pb.VIDEO_CODEC_H264, if_none_match="other")[0].data


def test_the_base_video_of_a_codec_the_server_lacks_is_an_invalid_argument(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        base_video(stub, codec=99)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "H264 (1)" in str(caught.value.details())
