"""lipsync.v1.LipSync over gRPC against the real server process serving the demo avatar."""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest
from numpy.typing import NDArray
from server_process import TIME_UNIT, ServerProcess

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

pytestmark = pytest.mark.integration
SAMPLE_RATE = 16_000


@pytest.fixture(scope="module")
def stub(demo_server: ServerProcess) -> Iterator[lipsync_pb2_grpc.LipSyncStub]:
    with grpc.insecure_channel(demo_server.address) as channel:
        yield lipsync_pb2_grpc.LipSyncStub(channel)


def decode(data: bytes) -> NDArray[np.uint8]:
    assert data[:2] == b"\xff\xd8", "no JPEG start marker"
    assert data[-2:] == b"\xff\xd9", "no JPEG end marker"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, dtype=np.uint8)


def tone(seconds: float, amplitude: float, frequency: float = 220.0) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = amplitude * 32767 * np.sin(2 * math.pi * frequency * t)
    return wave.astype("<i2").tobytes()


def infer(stub: lipsync_pb2_grpc.LipSyncStub, **fields: object) -> pb.InferResponse:
    request = pb.InferRequest(model_name="demo", **fields)  # type: ignore[arg-type]
    response: pb.InferResponse = stub.Infer(request, timeout=10 * TIME_UNIT)
    return response


def test_list_models_shows_the_ready_demo_avatar(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest()).models}
    demo = models["demo"]
    assert demo.state == pb.MODEL_STATE_READY
    assert (demo.width, demo.height, demo.fps, demo.engine) == (1280, 720, 25, "sprite")
    assert demo.frame_count >= 250
    assert demo.has_audio


def test_infer_returns_a_full_1280x720_jpeg_with_timings(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    response = infer(stub, frame_id=10, request_id="r-1")
    image = decode(response.image)
    assert image.shape == (720, 1280, 3)
    assert (response.width, response.height) == (1280, 720)
    assert response.request_id == "r-1"
    assert response.output_mode == pb.OUTPUT_MODE_FULL_FRAME
    assert response.timings.total_ms > 0
    assert response.timings.encode_ms > 0
    assert response.timings.batch_size == 1


def test_frames_driven_by_loud_and_silent_audio_differ_in_the_mouth_only(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    silent = infer(stub, frame_id=5, audio=pb.AudioWindow(pcm16=tone(0.2, 0.0), sample_rate=SAMPLE_RATE))
    loud = infer(stub, frame_id=5, audio=pb.AudioWindow(pcm16=tone(0.2, 0.8), sample_rate=SAMPLE_RATE))
    a, b = decode(silent.image).astype(int), decode(loud.image).astype(int)
    box = silent.bounds
    inside = np.abs(a - b)[box.y1 : box.y2, box.x1 : box.x2]
    assert inside.mean() > 2, "an open mouth should change the face region visibly"
    outside = np.abs(a - b).copy()
    outside[box.y1 : box.y2, box.x1 : box.x2] = 0
    # JPEG blocks straddling the box edge may change a little; everything else is identical.
    assert outside.mean() < 0.05


def test_the_package_audio_opens_and_closes_the_mouth_across_frames(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    crops = []
    for frame_id in range(0, 50, 2):
        response = infer(stub, frame_id=frame_id, output_mode=pb.OUTPUT_MODE_FACE_CROP)
        crops.append(decode(response.image).astype(int))
    box_h = crops[0].shape[0]
    mouths = [crop[box_h // 2 :, :] for crop in crops if crop.shape == crops[0].shape]
    differences = [np.abs(m - mouths[0]).mean() for m in mouths[1:]]
    assert max(differences) > 3, "successive frames should show different mouth shapes"


def test_face_crop_mode_returns_the_box_and_bounds_inside_the_frame(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    response = infer(stub, frame_id=3, output_mode=pb.OUTPUT_MODE_FACE_CROP)
    b = response.bounds
    assert 0 <= b.x1 < b.x2 <= 1280
    assert 0 <= b.y1 < b.y2 <= 720
    image = decode(response.image)
    assert image.shape[:2] == (b.y2 - b.y1, b.x2 - b.x1)
    assert (response.width, response.height) == (b.x2 - b.x1, b.y2 - b.y1)
    assert response.output_mode == pb.OUTPUT_MODE_FACE_CROP


@pytest.mark.parametrize("frame_id", [-1, 100_000])
def test_a_frame_outside_the_video_is_out_of_range(stub: lipsync_pb2_grpc.LipSyncStub, frame_id: int) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        infer(stub, frame_id=frame_id)
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert str(frame_id) in caught.value.details()


def test_an_unknown_model_is_not_found_and_the_available_ones_are_listed(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Infer(pb.InferRequest(model_name="sanders", frame_id=0), timeout=10 * TIME_UNIT)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "available models: demo" in caught.value.details()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"audio": pb.AudioWindow(pcm16=b"\x00\x01\x02", sample_rate=SAMPLE_RATE)}, "even"),
        ({"audio": pb.AudioWindow(pcm16=b"\x00\x00" * 10, sample_rate=44_100)}, "44100"),
        ({"audio": pb.AudioWindow(pcm16=b"\x00\x00" * 40_000)}, "longer than"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"output_mode": 7}, "output_mode"),
    ],
)
def test_malformed_fields_are_invalid_arguments_with_a_clear_message(
    stub: lipsync_pb2_grpc.LipSyncStub, fields: dict[str, object], fragment: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        infer(stub, frame_id=0, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in caught.value.details()


def test_a_batch_reports_each_item_on_its_own(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    requests = [pb.InferRequest(model_name="demo", frame_id=f, request_id=str(f)) for f in (1, 2, 99_999)]
    reply = stub.InferBatch(pb.InferBatchRequest(requests=requests), timeout=10 * TIME_UNIT)
    assert [r.request_id for r in reply.responses] == ["1", "2", "99999"]
    assert decode(reply.responses[0].image).shape == (720, 1280, 3)
    assert reply.responses[2].error.code == grpc.StatusCode.OUT_OF_RANGE.value[0]
    assert not reply.responses[2].image


def test_stream_infer_answers_pipelined_requests_in_order(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    ids = [7, 3, 11, 0, 5, 100_000, 8, 2, 9, 4, 6, 1]
    requests = (pb.InferRequest(model_name="demo", frame_id=f, request_id=f"q{f}") for f in ids)
    responses = list(stub.StreamInfer(requests, timeout=30 * TIME_UNIT))
    assert [r.request_id for r in responses] == [f"q{f}" for f in ids]
    assert responses[5].error.code == grpc.StatusCode.OUT_OF_RANGE.value[0]
    assert all(r.image[:2] == b"\xff\xd8" for i, r in enumerate(responses) if i != 5)


def test_speak_turns_audio_into_frames_at_the_model_fps(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    audio = tone(0.4, 0.0) + tone(0.4, 0.8)  # 20 frames: 10 silent, 10 loud
    messages = [pb.SpeakRequest(start=pb.SpeakStart(model_name="demo", output_mode=pb.OUTPUT_MODE_FACE_CROP))]
    messages += [pb.SpeakRequest(audio=audio[i : i + 3200]) for i in range(0, len(audio), 3200)]
    messages.append(pb.SpeakRequest(control=pb.SpeakControl(action=pb.SpeakControl.ACTION_END)))
    responses = list(stub.Speak(iter(messages), timeout=30 * TIME_UNIT))
    assert [r.sequence for r in responses] == list(range(20))
    assert [r.end_of_utterance for r in responses] == [False] * 19 + [True]
    assert [r.frame.frame_id for r in responses[:3]] == [0, 1, 2], "template frames walk forward"
    silent, loud = decode(responses[5].frame.image).astype(int), decode(responses[15].frame.image).astype(int)
    if silent.shape == loud.shape:
        assert np.abs(silent - loud).mean() > 1
    assert responses[-1].audio_time_ms == pytest.approx(19 * 40)


def test_speak_must_start_with_speak_start(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Speak(iter([pb.SpeakRequest(audio=b"\x00\x00")]), timeout=10 * TIME_UNIT))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_video_frame_returns_the_unmodified_base_frame(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    reply = stub.GetVideoFrame(pb.GetVideoFrameRequest(model_name="demo", frame_id=0), timeout=10 * TIME_UNIT)
    assert decode(reply.image).shape == (720, 1280, 3)
    assert (reply.width, reply.height) == (1280, 720)


def test_metadata_of_an_unknown_model_is_not_found(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModelMetadata(pb.GetModelMetadataRequest(model_name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_load_model_is_refused_without_a_models_root(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.LoadModel(pb.LoadModelRequest(path="demo"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_get_model_audio_returns_the_package_wav(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    reply = stub.GetModelAudio(pb.GetModelAudioRequest(model_name="demo"), timeout=10 * TIME_UNIT)
    assert reply.wav[:4] == b"RIFF"
    assert reply.wav[8:12] == b"WAVE"
    assert reply.sample_rate == SAMPLE_RATE
    assert reply.duration_s == pytest.approx(12.0, abs=0.1)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModelAudio(pb.GetModelAudioRequest(model_name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_batch_larger_than_the_queue_is_refused_whole(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    requests = [pb.InferRequest(model_name="demo", frame_id=0)] * 65  # the default --max-queue is 64
    with pytest.raises(grpc.RpcError) as caught:
        stub.InferBatch(pb.InferBatchRequest(requests=requests), timeout=10 * TIME_UNIT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 64" in caught.value.details()
