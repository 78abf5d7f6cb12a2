from __future__ import annotations

from typing import Any

from loadtests.bench_report import RENDERERS, evaluate_targets, find_run


def run(
    name: str,
    connections: int,
    fps: float,
    p50: float,
    p99: float,
    *,
    depth: int = 1,
    delay: float = 0.0,
    proxy_cpu: float | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "target": "x",
        "connections": connections,
        "depth": depth,
        "frames_per_s": fps,
        "megabytes_per_s": fps * 0.098,
        "latency_ms": {"mean": p50, "p50": p50, "p90": p99, "p99": p99, "max": p99},
        "errors": {},
        "error_count": 0,
        "cpu_us_per_frame": {"proxy": proxy_cpu, "backend": 150.0, "client": 100.0},
        "labels": {"delay_ms": delay, "load_average": [1.5, 1.0, 0.5]},
    }


def turns(direct_p50: float, proxy_p50: float, direct_p99: float, proxy_p99: float) -> dict[str, Any]:
    def summary(p50: float, p99: float) -> dict[str, float]:
        return {"count": 4000, "mean": p50, "p50": p50, "p90": p99, "p99": p99, "max": p99}

    return {
        "pairs": 4000,
        "direct unary": summary(direct_p50, direct_p99),
        "proxy v1": summary(proxy_p50, proxy_p99),
    }


RESULTS: dict[str, Any] = {
    "machine": {"CPU": "test CPU, 2 cores"},
    "turns": turns(0.50, 0.55, 0.90, 1.50),
    "proxy": [
        run("direct unary", 1, 1500, 0.50, 0.90),
        run("proxy v1", 1, 1400, 0.90, 1.00, proxy_cpu=300),
        run("direct unary", 64, 3000, 20, 40),
        run("proxy v1", 64, 4200, 15, 30, proxy_cpu=110),
        run("proxy v1 tracing off", 64, 4300, 15, 30, proxy_cpu=100),
        run("proxy v1 always_on", 64, 3000, 20, 40, proxy_cpu=210),
        run("proxy v1", 64, 1000, 60, 90, delay=17.0, proxy_cpu=500),
    ],
    "pipelining": [
        run("direct unary", 1, 400, 20, 25, depth=8, delay=17.0),
        run("proxy v1", 1, 390, 20, 26, depth=8, delay=17.0, proxy_cpu=200),
    ],
    "idle": [
        {
            "connections": 1000,
            "frames_each": 0,
            "rss_before_kib": 40960,
            "rss_after_kib": 56960,
            "kib_per_connection": 16.0,
            "load_average": [1.0, 1.0, 1.0],
        },
    ],
    "server": [
        {
            "key": "full",
            "name": "full",
            "per_core": 500.0,
            "per_wall_s": 490.0,
            "bytes_per_frame": 1.0,
            "load_average": [1.0, 1.0, 1.0],
        },
        {
            "key": "whole",
            "name": "whole",
            "per_core": 3000.0,
            "per_wall_s": 2900.0,
            "bytes_per_frame": 1.0,
            "load_average": [1.0, 1.0, 1.0],
        },
    ],
}


def verdicts() -> dict[str, bool | None]:
    return {target.what: target.met for target in evaluate_targets(RESULTS)}


def test_each_target_is_judged_from_the_runs_it_names() -> None:
    met = verdicts()
    # Taking turns, not from the side-by-side runs at one connection (+0.40 ms there).
    assert met["proxy: added latency at 1 connection, p50"] is True  # +0.05 ms
    assert met["proxy: added latency at 1 connection, p99"] is False  # +0.6 ms
    assert met["proxy: CPU per frame at 64 connections"] is True  # 110 µs, the 0 ms backend's run
    assert met["proxy: throughput at 64 connections"] is True  # ×1.4
    assert met["proxy: 1 connection pipelining 8, 17 ms backend"] is True  # ×0.975
    assert met["proxy: CPU per frame at 64 connections, every frame sampled"] is False  # ×2.1 tracing off
    assert met["proxy: 1,000 idle connections (worst of: never used, one frame each)"] is True
    assert met["server: sprite full 1280×720 frames per core"] is False  # 500/s; the 3,000/s baseline row
    # is not what the target judges


def test_a_target_without_its_runs_is_not_measured_rather_than_failed() -> None:
    met = verdicts()
    assert met["server: face-crop frames per core"] is None
    assert met["end to end: nginx TLS + proxy, p50"] is None
    assert all(target.met is None for target in evaluate_targets({}))


def test_runs_are_found_by_client_connections_depth_and_delay() -> None:
    runs = RESULTS["proxy"]
    assert find_run(runs, "proxy v1", 64)["frames_per_s"] == 4200  # type: ignore[index]
    assert find_run(runs, "proxy v1", 64, delay_ms=17.0)["frames_per_s"] == 1000  # type: ignore[index]
    assert find_run(runs, "proxy v2", 64) is None


def test_every_section_renders_from_full_and_from_empty_results() -> None:
    for key, render in RENDERERS.items():
        assert render(RESULTS).strip(), key
        assert render({}).strip(), key
    targets = RENDERERS["targets"](RESULTS)
    for verdict in ("**not met**", "| met |", "not measured"):
        assert verdict in targets
    assert "| 64 | 1 | proxy v1 | 4,200 | 1.40 |" in RENDERERS["proxy"](RESULTS)
    assert "| proxy v1 | 0.550 | 1.50 | 1.50 |" in RENDERERS["proxy"](RESULTS)


def test_the_proxy_targets_are_those_of_the_spec_150_us_a_frame_and_0_15_ms_added() -> None:
    def judged(added_ms: float, cpu_us: float) -> tuple[bool | None, bool | None]:
        results = {
            "proxy": [run("proxy v1", 64, 4200, 15, 30, proxy_cpu=cpu_us)],
            "turns": turns(0.50, 0.50 + added_ms, 0.90, 1.0),
        }
        met = {target.what: target.met for target in evaluate_targets(results)}
        return met["proxy: added latency at 1 connection, p50"], met["proxy: CPU per frame at 64 connections"]

    assert judged(0.14, 145) == (True, True)
    assert judged(0.16, 155) == (False, False)
