"""The real server process running a SyncTalk_2D-layout package whose models are the converted
formula-weight UNet-328 and AVE encoder: frames, audio-driven mouths, Speak, and batches under load."""

from __future__ import annotations

import math
import re
import shutil
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
from conftest import ConvertedModels
from numpy.typing import NDArray
from package_factory import write_synctalk_package
from server_process import TIME_UNIT, ServerProcess

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

pytestmark = pytest.mark.integration
MODEL = "avatar"
WIDTH, HEIGHT = 320, 240
FRAMES = 12
SAMPLE_RATE = 16_000


@pytest.fixture(scope="module")
def server(
    converted_models: ConvertedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("models")
    root = models / MODEL
    write_synctalk_package(root, name=MODEL, frame_count=FRAMES, width=WIDTH, height=HEIGHT, checkpoint=False)
    (root / "checkpoint").mkdir()
    shutil.copyfile(converted_models.unet, root / "checkpoint" / "model_best.onnx")
    shutil.copyfile(converted_models.audio_encoder, root / "checkpoint" / "audio_encoder.onnx")
    process = ServerProcess(
        [
            *("--models-dir", str(models), "--device", "cpu", "--workers", "2", "--grace-period", "1"),
            *("--max-batch", "8", "--batch-wait-ms", "50"),
        ],
        tmp_path_factory.mktemp("cache"),
    ).start()
    try:
        process.wait_serving()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[lipsync_pb2_grpc.LipSyncStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield lipsync_pb2_grpc.LipSyncStub(channel)


def decode(data: bytes) -> NDArray[np.int16]:
    assert data[:2] == b"\xff\xd8"
    assert data[-2:] == b"\xff\xd9"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, dtype=np.int16)


def speech(seconds: float, pitch: float) -> bytes:
    """A voiced sound with a syllable rhythm, PCM16."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 4 * t)
    voice = sum(np.sin(2 * math.pi * pitch * k * t) / k for k in range(1, 6))
    return (envelope * voice * 6000).astype("<i2").tobytes()


def infer(stub: lipsync_pb2_grpc.LipSyncStub, **fields: object) -> pb.InferResponse:
    request = pb.InferRequest(model_name=MODEL, **fields)  # type: ignore[arg-type]
    response: pb.InferResponse = stub.Infer(request, timeout=60 * TIME_UNIT)
    return response


def test_the_package_is_served_as_a_unet328_model(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    (model,) = stub.ListModels(pb.ListModelsRequest()).models
    assert (model.name, model.engine, model.state) == (MODEL, "unet328", pb.MODEL_STATE_READY)
    assert (model.frame_count, model.width, model.height, model.fps) == (FRAMES, WIDTH, HEIGHT, 25)


def test_infer_returns_the_full_frame_with_the_face_rendered_by_the_model(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    response = infer(stub, frame_id=4)
    image = decode(response.image)
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert response.timings.inference_ms > 0
    base = decode(stub.GetVideoFrame(pb.GetVideoFrameRequest(model_name=MODEL, frame_id=4)).image)
    b = response.bounds
    inside = np.abs(image - base)[b.y1 + 8 : b.y2 - 8, b.x1 + 8 : b.x2 - 8].mean()
    outside = np.abs(image - base)
    outside[b.y1 : b.y2, b.x1 : b.x2] = 0
    assert inside > 10, "formula weights draw no face, but they do redraw the box"
    assert outside.mean() < 1, "the rest of the frame is the base frame"


def test_two_audio_windows_give_two_different_mouths(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    crops = []
    for audio in (bytes(2 * SAMPLE_RATE), speech(1.0, 140.0)):
        window = pb.AudioWindow(pcm16=audio, sample_rate=SAMPLE_RATE)
        response = infer(stub, frame_id=6, output_mode=pb.OUTPUT_MODE_FACE_CROP, audio=window)
        b = response.bounds
        crops.append(decode(response.image))
        assert crops[-1].shape == (b.y2 - b.y1, b.x2 - b.x1, 3)
    assert np.abs(crops[0] - crops[1]).mean() > 3


def test_speak_returns_one_frame_per_40_ms_of_the_audio_sent(stub: lipsync_pb2_grpc.LipSyncStub) -> None:
    audio = speech(0.2, 180.0)

    def requests() -> Iterator[pb.SpeakRequest]:
        yield pb.SpeakRequest(start=pb.SpeakStart(model_name=MODEL, output_mode=pb.OUTPUT_MODE_FACE_CROP))
        for start in range(0, len(audio), 1280):
            yield pb.SpeakRequest(audio=audio[start : start + 1280])
        yield pb.SpeakRequest(control=pb.SpeakControl(action=pb.SpeakControl.ACTION_END))

    responses = list(stub.Speak(requests(), timeout=120 * TIME_UNIT))
    assert [r.sequence for r in responses] == list(range(5)), "0.2 s at 25 fps"
    assert [r.audio_time_ms for r in responses] == [0, 40, 80, 120, 160]
    assert all(not r.frame.HasField("error") for r in responses)
    assert [r.end_of_utterance for r in responses] == [False] * 4 + [True]
    assert [r.frame.frame_id for r in responses] == [0, 1, 2, 3, 4]


def test_sixteen_concurrent_requests_are_served_in_batches(
    stub: lipsync_pb2_grpc.LipSyncStub, server: ServerProcess
) -> None:
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: infer(stub, frame_id=i % FRAMES), range(16)))
    assert all(decode(r.image).shape == (HEIGHT, WIDTH, 3) for r in responses)
    assert max(r.timings.batch_size for r in responses) > 1
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    )
    count = float(re.search(r"^lipsync_server_batch_size_count (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"^lipsync_server_batch_size_sum (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert total / count > 1.5, "frames ran in batches, not one by one"


def test_speak_frames_hear_the_audio_around_them_as_a_whole_utterance_would(
    stub: lipsync_pb2_grpc.LipSyncStub,
) -> None:
    audio = speech(0.4, 160.0)

    def requests() -> Iterator[pb.SpeakRequest]:
        yield pb.SpeakRequest(start=pb.SpeakStart(model_name=MODEL, output_mode=pb.OUTPUT_MODE_FACE_CROP))
        for start in range(0, len(audio), 640):
            yield pb.SpeakRequest(audio=audio[start : start + 640])
        yield pb.SpeakRequest(control=pb.SpeakControl(action=pb.SpeakControl.ACTION_END))

    spoken = list(stub.Speak(requests(), timeout=120 * TIME_UNIT))
    assert len(spoken) == 10
    for index in (0, 4, 9):
        window = pb.AudioWindow(pcm16=audio, sample_rate=SAMPLE_RATE, center_sample=640 * index)
        alone = infer(stub, frame_id=index, output_mode=pb.OUTPUT_MODE_FACE_CROP, audio=window)
        assert np.abs(decode(spoken[index].frame.image) - decode(alone.image)).mean() < 0.5
