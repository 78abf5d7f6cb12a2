"""The seed-compatible optimized_lipsyncsrv service answers as the seed's clients expect."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest
from server_process import TIME_UNIT, ServerProcess

from lipsync_protos import optimized_lipsyncsrv_pb2 as seed
from lipsync_protos import optimized_lipsyncsrv_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stub(demo_server: ServerProcess) -> Iterator[optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceStub]:
    with grpc.insecure_channel(demo_server.address) as channel:
        yield optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceStub(channel)


Stub = optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceStub


def test_generate_inference_returns_the_face_crop_and_its_bounds(stub: Stub) -> None:
    reply = stub.GenerateInference(seed.OptimizedInferenceRequest(model_name="demo", frame_id=50), timeout=10)
    assert reply.success
    assert not reply.HasField("error")
    assert (reply.model_name, reply.frame_id) == ("demo", 50)
    x1, y1, x2, y2 = reply.bounds
    image = cv2.imdecode(np.frombuffer(reply.prediction_data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (int(y2 - y1), int(x2 - x1), 3)
    assert reply.prediction_shape == f"{int(y2 - y1)}x{int(x2 - x1)}x3"
    assert reply.inference_time_ms > 0
    assert reply.composite_time_ms >= 0


def test_generate_inference_reports_failure_in_the_reply_as_the_seed_did(stub: Stub) -> None:
    reply = stub.GenerateInference(
        seed.OptimizedInferenceRequest(model_name="sanders", frame_id=1), timeout=10
    )
    assert not reply.success
    assert reply.error.startswith("NOT_FOUND")
    assert "demo" in reply.error
    assert not reply.prediction_data


def test_list_models_and_health_check_answer_like_the_seed(stub: Stub) -> None:
    models = stub.ListModels(seed.ListModelsRequest())
    assert list(models.loaded_models) == ["demo"]
    assert models.count == 1
    health = stub.HealthCheck(seed.HealthRequest())
    assert health.healthy
    assert health.status == "SERVING"
    assert health.loaded_models == 1
    assert health.uptime_seconds >= 0


def test_metadata_lists_frames_videos_audio_and_bounds(stub: Stub) -> None:
    reply = stub.GetModelMetadata(seed.GetModelMetadataRequest(model_name="demo"))
    assert reply.success
    assert reply.frame_count >= 250
    assert "full_body" in reply.available_videos or reply.available_videos
    assert reply.audio_path.endswith(".wav")
    assert len(reply.bounds) == 4


def test_get_video_frame_returns_the_full_body_frame(stub: Stub) -> None:
    reply = stub.GetVideoFrame(
        seed.GetVideoFrameRequest(model_name="demo", frame_id=2, video_type="full_body")
    )
    assert reply.success
    assert reply.frame_id == 2
    assert reply.video_type == "full_body"
    image = cv2.imdecode(np.frombuffer(reply.frame_data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (720, 1280, 3)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetVideoFrame(seed.GetVideoFrameRequest(model_name="demo", frame_id=2, video_type="crops_328"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "full_body" in caught.value.details()


def test_batch_inference_answers_every_frame(stub: Stub) -> None:
    reply = stub.GenerateBatchInference(seed.BatchInferenceRequest(model_name="demo", frame_ids=[0, 1, 2]))
    assert [r.frame_id for r in reply.responses] == [0, 1, 2]
    assert all(r.success for r in reply.responses)
    assert reply.avg_frame_time_ms > 0


def test_batch_with_audio_uses_the_audio_sent(stub: Stub) -> None:
    silence, loud = bytes(1280), (20000 * np.tile([1, -1], 320)).astype("<i2").tobytes()
    chunks = [silence] * 8 + [silence, loud] + [silence] * 7  # frame 0 silent, frame 1 loud
    request = seed.BatchInferenceWithAudioRequest(
        model_name="demo", start_frame_id=10, frame_count=2, audio_chunks=chunks
    )
    reply = stub.GenerateBatchWithAudio(request, timeout=10 * TIME_UNIT)
    assert [r.frame_id for r in reply.responses] == [10, 11]
    assert all(r.success for r in reply.responses)


def test_batch_with_audio_answers_too_few_chunks_with_per_frame_errors_as_the_seed_did(stub: Stub) -> None:
    request = seed.BatchInferenceWithAudioRequest(
        model_name="demo", start_frame_id=0, frame_count=3, audio_chunks=[bytes(1280)] * 17
    )
    reply = stub.GenerateBatchWithAudio(request, timeout=10 * TIME_UNIT)
    assert [r.success for r in reply.responses] == [True, True, False]
    assert reply.responses[2].error.startswith("INVALID_ARGUMENT: frame 2 needs audio chunks 2-17")
    assert not reply.responses[2].prediction_data


def test_batch_with_audio_takes_24_khz_chunks_of_the_seeds_browser_page(stub: Stub) -> None:
    # A 500 Hz square wave: what 16 kHz can carry, once resampled.
    silence, loud = bytes(1920), (20000 * np.tile([1] * 24 + [-1] * 24, 20)).astype("<i2").tobytes()
    replies = [
        stub.GenerateBatchWithAudio(
            seed.BatchInferenceWithAudioRequest(
                model_name="demo",
                start_frame_id=10,
                frame_count=1,
                audio_chunks=[silence] * 8 + [own] + [silence] * 7,
            ),
            timeout=10 * TIME_UNIT,
        ).responses[0]
        for own in (silence, loud)
    ]
    assert all(r.success for r in replies)
    assert replies[0].prediction_data != replies[1].prediction_data


def test_batch_with_audio_of_chunks_it_cannot_read_uses_the_packages_audio(stub: Stub) -> None:
    # A seed test script sent 16,384-byte chunks.
    odd = seed.BatchInferenceWithAudioRequest(
        model_name="demo", start_frame_id=20, frame_count=2, audio_chunks=[bytes(16_384)] * 17
    )
    own = stub.GenerateBatchInference(seed.BatchInferenceRequest(model_name="demo", frame_ids=[20, 21]))
    reply = stub.GenerateBatchWithAudio(odd, timeout=10 * TIME_UNIT)
    assert all(r.success for r in reply.responses)
    assert [r.prediction_data for r in reply.responses] == [r.prediction_data for r in own.responses]


def test_a_batch_of_285_frames_with_audio_is_answered_whole(stub: Stub) -> None:
    request = seed.BatchInferenceWithAudioRequest(
        model_name="demo", start_frame_id=0, frame_count=285, audio_chunks=[bytes(1280)] * 300
    )
    reply = stub.GenerateBatchWithAudio(request, timeout=60 * TIME_UNIT)
    assert [r.frame_id for r in reply.responses] == list(range(285))
    assert all(r.success for r in reply.responses)


def test_stream_inference_answers_in_order(stub: Stub) -> None:
    requests = [seed.OptimizedInferenceRequest(model_name="demo", frame_id=f) for f in (4, 2, 9)]
    replies = list(stub.StreamInference(iter(requests), timeout=10 * TIME_UNIT))
    assert [r.frame_id for r in replies] == [4, 2, 9]
    assert all(r.success for r in replies)


def test_get_stats_counts_requests(stub: Stub) -> None:
    stub.GenerateInference(seed.OptimizedInferenceRequest(model_name="demo", frame_id=0))
    stats = stub.GetStats(seed.StatsRequest(model_name="demo"))
    assert stats.total_requests >= 1
    assert stats.frame_count >= 250
    assert stats.min_inference_time_ms <= stats.avg_inference_time_ms <= stats.max_inference_time_ms
    assert stats.device == "cpu"  # the demo's sprite engine's


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        ("GetStats", seed.StatsRequest(model_name="sanders")),
        ("GetModelMetadata", seed.GetModelMetadataRequest(model_name="sanders")),
        ("GetVideoFrame", seed.GetVideoFrameRequest(model_name="sanders", frame_id=1)),
        ("GetVideoFrame", seed.GetVideoFrameRequest(model_name="demo", frame_id=100_000)),
    ],
)
def test_lookups_of_an_unknown_model_or_frame_are_not_found_as_the_seeds_were(
    stub: Stub, call: str, request_: object
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request_, timeout=10 * TIME_UNIT)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details()


def test_load_package_is_refused_without_a_models_root(stub: Stub) -> None:
    reply = stub.LoadPackage(seed.LoadPackageRequest(package_name="x", package_dir="/etc"))
    assert not reply.success
    assert "PERMISSION_DENIED" in reply.error


def test_a_batch_larger_than_the_queue_is_answered_a_queue_at_a_time(stub: Stub) -> None:
    reply = stub.GenerateBatchInference(
        seed.BatchInferenceRequest(model_name="demo", frame_ids=[f % 300 for f in range(130)]),
        timeout=60 * TIME_UNIT,
    )
    assert [r.frame_id for r in reply.responses] == [f % 300 for f in range(130)]
    assert all(r.success for r in reply.responses)


def test_an_audio_batch_running_past_the_last_int32_frame_id_is_refused(stub: Stub) -> None:
    # Its last frame id overflowed the replies' int32 field (UNKNOWN) until fuzzing found it.
    request = seed.BatchInferenceWithAudioRequest(
        model_name="demo", start_frame_id=2**31 - 1, frame_count=2, audio_chunks=[bytes(1280)] * 17
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.GenerateBatchWithAudio(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "last frame id" in caught.value.details()


def test_a_batch_whose_reply_would_pass_the_message_limit_is_resource_exhausted_naming_it(stub: Stub) -> None:
    # 10,000 of the demo's face crops (about 10 KB each) are more than the 64 MiB a reply may hold.
    request = seed.BatchInferenceRequest(model_name="demo", frame_ids=[f % 300 for f in range(10_000)])
    with pytest.raises(grpc.RpcError) as caught:
        stub.GenerateBatchInference(request, timeout=60 * TIME_UNIT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "67,108,864-byte message limit" in caught.value.details()
