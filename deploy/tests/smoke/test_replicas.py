"""The replica check's own pure parts: reading a replica's frame count, the proxy's /health, and the
verdict. The check as a whole runs as `make replicas`."""

from __future__ import annotations

from types import ModuleType
from typing import Any

METRICS = """# HELP lipsync_server_frames_total Frames rendered, by model and output mode
# TYPE lipsync_server_frames_total counter
lipsync_server_frames_total{model="demo",output_mode="full"} 120.0
lipsync_server_frames_total{model="other",output_mode="crop"} 3.0
lipsync_server_frames_created{model="demo",output_mode="full"} 1.7e+09
lipsync_server_frames_totally_else 99.0
"""


def health(*backends: tuple[str, str]) -> dict[str, object]:
    return {"status": "SERVING", "backends": [{"name": n, "target": "t", "status": s} for n, s in backends]}


def test_a_replicas_frames_are_its_frame_counter_summed_over_labels(replicas: ModuleType) -> None:
    assert replicas.frames_counted(METRICS) == 123
    assert replicas.frames_counted("# nothing counted yet\n") == 0


def test_serving_backends_are_known_by_the_address_the_name_resolved_to(replicas: ModuleType) -> None:
    reply = health(
        ("lipsync-server:50051 (172.18.0.5)", "SERVING"),
        ("lipsync-server:50051 (172.18.0.6)", "NOT_SERVING"),
        ("lipsync-server:50051 (172.18.0.7)", "SERVING"),
    )
    assert replicas.serving_addresses(reply) == {"172.18.0.5", "172.18.0.7"}
    assert replicas.listed_addresses(reply) == 3
    assert replicas.serving_addresses(health(("127.0.0.1:50051", "SERVING"))) == {"127.0.0.1:50051"}
    assert replicas.serving_addresses({"status": "NOT_SERVING"}) == set()


def passing_summary(replicas: ModuleType) -> Any:
    stop = replicas.StopFigures("SIGTERM", "r-1", "172.18.0.5", 10, 1.0, 0.5, 5.0, 9.0, 9.5, 4)
    return replicas.Summary(
        replicas=3,
        requests_sent=100,
        requests_served=100,
        frames_per_replica={"r-1": 30, "r-2": 35, "r-3": 35},
        stops=[stop],
    )


def test_the_check_passes_only_with_every_request_served_every_replica_used_and_each_stop_recovered(
    replicas: ModuleType,
) -> None:
    summary = passing_summary(replicas)
    assert summary.verdict() is None

    summary.requests_served, summary.requests_failed = 99, 1
    assert "1 of 100 requests failed" in summary.verdict()

    summary = passing_summary(replicas)
    summary.frames_per_replica["r-3"] = 0
    assert "not every replica" in summary.verdict()

    summary = passing_summary(replicas)
    summary.stops[0].used_again_s = None
    assert "SIGTERM was not left out and used again" in summary.verdict()
