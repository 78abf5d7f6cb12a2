"""`/metrics` of the real server process after known traffic: every metric there, with the values the
traffic implies."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from package_factory import write_native_package
from prometheus_client.parser import text_string_to_metric_families
from server_process import TIME_UNIT, ServerProcess

from lipsync_common.waiting import wait_until
from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

pytestmark = pytest.mark.integration

MODEL = "metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("metrics-models")
    write_native_package(models / MODEL, name=MODEL)
    process = ServerProcess(["--models-dir", str(models), "--grace-period", "1"], models).start()
    try:
        process.wait_serving(60 * TIME_UNIT)
        yield process
    finally:
        process.stop()


def scrape(server: ServerProcess) -> Samples:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5 * TIME_UNIT) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def calls_counted(samples: Samples) -> float:
    return sum(count for (name, _labels), count in samples.items() if name == "lipsync_server_requests_total")


def test_after_traffic_every_metric_has_the_values_the_traffic_implies(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        for frame_id in range(5):
            stub.Infer(pb.InferRequest(model_name=MODEL, frame_id=frame_id), timeout=10 * TIME_UNIT)
        with pytest.raises(grpc.RpcError):
            stub.Infer(pb.InferRequest(model_name=MODEL, frame_id=999), timeout=10 * TIME_UNIT)
        stream = iter(
            [
                pb.InferRequest(model_name=MODEL, frame_id=i, output_mode=pb.OUTPUT_MODE_FACE_CROP)
                for i in range(4)
            ]
            + [pb.InferRequest(model_name="nobody", frame_id=0)]
        )
        assert len(list(stub.StreamInfer(stream, timeout=10 * TIME_UNIT))) == 5
        batch = [pb.InferRequest(model_name=MODEL, frame_id=f) for f in (999, 998)]
        reply = stub.InferBatch(pb.InferBatchRequest(requests=batch), timeout=10 * TIME_UNIT)
        assert all(item.HasField("error") for item in reply.responses)
    # The server counts a call once it has answered it: wait until all eight calls are counted.
    wait_until(lambda: calls_counted(scrape(server)) == 8, 5 * TIME_UNIT, "every call counted")
    samples = scrape(server)

    assert value(samples, "lipsync_server_requests_total", method="Infer", code="OK") == 5
    assert value(samples, "lipsync_server_requests_total", method="Infer", code="OUT_OF_RANGE") == 1
    assert value(samples, "lipsync_server_requests_total", method="StreamInfer", code="OK") == 1
    # The failed items of a stream and a batch whose calls succeeded.
    assert value(samples, "lipsync_server_requests_total", method="InferBatch", code="OK") == 1
    assert value(samples, "lipsync_server_item_errors_total", method="StreamInfer", code="NOT_FOUND") == 1
    assert value(samples, "lipsync_server_item_errors_total", method="InferBatch", code="OUT_OF_RANGE") == 2
    assert value(samples, "lipsync_server_request_duration_seconds_count", method="Infer") == 6
    assert value(samples, "lipsync_server_request_duration_seconds_sum", method="Infer") > 0
    assert value(samples, "lipsync_server_frames_total", model=MODEL, output_mode="full_frame") == 5
    assert value(samples, "lipsync_server_frames_total", model=MODEL, output_mode="face_crop") == 4
    for stage in ("audio_features", "inference", "composite", "encode"):
        assert value(samples, "lipsync_server_stage_duration_seconds_count", stage=stage) == 9
    assert value(samples, "lipsync_server_stage_duration_seconds_sum", stage="encode") > 0
    # One observation per render call; the stream's frames may have shared a batch.
    assert value(samples, "lipsync_server_batch_size_count") == 9
    assert 9 <= value(samples, "lipsync_server_batch_size_sum") <= 9 * 4
    assert value(samples, "lipsync_server_models", state="ready") == 1
    assert value(samples, "lipsync_server_models", state="failed") == 0
    # At rest: the scrape itself is no RPC, and every frame has been rendered.
    assert value(samples, "lipsync_server_inflight_requests") == 0
    assert value(samples, "lipsync_server_queued_frames") == 0
