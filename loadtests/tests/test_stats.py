from __future__ import annotations

import json
import math

import pytest

from loadtests.stats import CpuUse, LatencySummary, RunResult, count_errors, percentile


def test_percentiles_are_nearest_rank_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.5) == 100
    assert percentile(values, 100) == 100
    assert percentile([7.0], 1) == 7


def test_a_percentile_of_nothing_is_nan_and_a_share_outside_0_100_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 0)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_a_latency_summary_sorts_its_samples() -> None:
    summary = LatencySummary.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (summary.count, summary.mean, summary.p50, summary.p90, summary.p99, summary.max) == (
        5,
        3,
        3,
        5,
        5,
        5,
    )


def test_a_run_summary_is_json_with_rates_cpu_per_frame_and_no_nan() -> None:
    run = RunResult(
        name="proxy v1",
        target="ws://127.0.0.1:1/ws",
        connections=2,
        depth=1,
        wall_s=2.0,
        latencies_ms=[1.0, 2.0, 3.0, 4.0],
        errors={"UNAVAILABLE": 1},
        bytes_received=4_000_000,
        cpu=[CpuUse(1, "proxy", 0.002), CpuUse(2, "backend", 0.0)],
        labels={"delay_ms": 17.0},
    )
    summary = run.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["frames"] == 4
    assert summary["frames_per_s"] == 2.0
    assert summary["megabytes_per_s"] == 2.0
    assert summary["error_count"] == 1
    assert summary["cpu_us_per_frame"] == {"proxy": 500.0, "backend": 0.0}
    assert math.isnan(run.cpu_us_per_frame("client"))


def test_a_run_without_replies_summarises_to_nulls_not_nan() -> None:
    run = RunResult("direct unary", "x", 1, 1, 1.0, [], {}, 0)
    summary = run.summary()
    assert summary["latency_ms"] == {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    assert "NaN" not in json.dumps(summary)


def test_errors_are_counted_most_frequent_first() -> None:
    assert list(count_errors(["A", "B", "B", "C", "B", "A"]).items()) == [("B", 3), ("A", 2), ("C", 1)]
