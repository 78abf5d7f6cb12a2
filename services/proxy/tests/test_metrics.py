"""The proxy's metrics are the ones docs/observability.md lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from lipsync_proxy.metrics import LATENCY_BUCKETS, LoopCounter, LoopHistogram, Metrics

OBSERVABILITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "observability.md"


def test_the_documented_proxy_metrics_are_exactly_those_exposed() -> None:
    section = OBSERVABILITY_DOC.read_text().split("### Proxy metrics")[1].split("\n### ")[0]
    documented = set(re.findall(r"^\| `(lipsync_proxy_\w+)`", section, re.MULTILINE))
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert documented == exposed


def test_a_session_counts_its_frames_and_its_delivered_share() -> None:
    metrics = Metrics()
    metrics.count_session(requested=10, delivered=9)
    metrics.count_session(requested=0, delivered=0)
    registry = metrics.registry
    assert registry.get_sample_value("lipsync_proxy_session_frames_requested_total") == 10
    assert registry.get_sample_value("lipsync_proxy_session_frames_delivered_total") == 9
    assert registry.get_sample_value("lipsync_proxy_session_delivered_ratio_count") == 1, (
        "one asked for frames"
    )
    assert registry.get_sample_value("lipsync_proxy_session_delivered_ratio_bucket", {"le": "0.9"}) == 1
    assert registry.get_sample_value("lipsync_proxy_session_delivered_ratio_bucket", {"le": "0.8"}) == 0


def test_a_loop_counter_adds_up_each_series_of_labels() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("things", "Things", ["kind", "code"], registry)
    counter.inc(("a", "OK"))
    counter.inc(("a", "OK"), 2)
    counter.inc(("b", "INTERNAL"))
    assert registry.get_sample_value("things_total", {"kind": "a", "code": "OK"}) == 3
    assert registry.get_sample_value("things_total", {"kind": "b", "code": "INTERNAL"}) == 1
    assert registry.get_sample_value("things_total", {"kind": "b", "code": "OK"}) is None


def test_a_loop_histogram_counts_a_value_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    registry = CollectorRegistry()
    histogram = LoopHistogram("waits", "Waits", ["kind"], (0.1, 1), registry)
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(("a",), value)

    def bucket(bound: str) -> float | None:
        return registry.get_sample_value("waits_bucket", {"kind": "a", "le": bound})

    assert (bucket("0.1"), bucket("1.0"), bucket("+Inf")) == (2, 4, 5), "cumulative, bounds included"
    assert registry.get_sample_value("waits_count", {"kind": "a"}) == 5
    assert registry.get_sample_value("waits_sum", {"kind": "a"}) == pytest.approx(8.65)


def test_a_loop_histogram_reads_as_prometheus_clients_own_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop_histogram = LoopHistogram("waits", "Waits", ["kind"], LATENCY_BUCKETS, ours)
    histogram = Histogram("waits", "Waits", ["kind"], buckets=LATENCY_BUCKETS, registry=theirs)
    for value in (0.0005, 0.001, 0.012, 0.3, 9.0):
        loop_histogram.observe(("a",), value)
        histogram.labels("a").observe(value)
    exposed = [line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line]
    assert generate_latest(ours).decode().splitlines() == exposed


def test_a_request_counts_once_with_its_latency_and_frame_calls_count_their_frames() -> None:
    metrics = Metrics()
    metrics.count_request("v1_frame", "OK", 0.012)
    metrics.record_frames("InferBatch", 8, 0.02)
    registry = metrics.registry
    v1_frame = {"type": "v1_frame"}
    assert registry.get_sample_value("lipsync_proxy_requests_total", {**v1_frame, "code": "OK"}) == 1
    assert registry.get_sample_value("lipsync_proxy_request_duration_seconds_count", v1_frame) == 1
    assert registry.get_sample_value("lipsync_proxy_backend_frames_total", {"method": "InferBatch"}) == 8
    assert registry.get_sample_value("lipsync_proxy_backend_frames_total", {"method": "Infer"}) == 0, (
        "every frame method is exposed from the start"
    )
    assert registry.get_sample_value("lipsync_proxy_backend_batch_size_bucket", {"le": "8.0"}) == 1
