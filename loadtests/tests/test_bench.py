from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests import bench
from loadtests.bench import BenchSettings, median_run, merged
from loadtests.stats import RunResult

from .test_bench_report import RESULTS


def test_a_run_of_some_sections_keeps_the_figures_of_the_others() -> None:
    previous = {
        "proxy": ["old proxy"],
        "idle": ["old idle"],
        "measured": {"proxy": {"at": "1"}, "idle": {"at": "1"}},
    }
    latest = {"idle": ["new idle"], "measured": {"idle": {"at": "2"}}}
    assert merged(previous, latest) == {
        "proxy": ["old proxy"],
        "idle": ["new idle"],
        "measured": {"proxy": {"at": "1"}, "idle": {"at": "2"}},
    }


def test_the_quick_pass_shortens_every_measurement() -> None:
    full, quick = BenchSettings(), BenchSettings().quick()
    assert quick.duration_s < full.duration_s
    assert quick.rounds < full.rounds
    assert quick.idle_connections < full.idle_connections
    assert quick.server_duration_s < full.server_duration_s
    assert quick.proxy_viewers.step_s < full.proxy_viewers.step_s
    assert quick.connections == full.connections == (1, 8, 64)
    assert quick.delays_ms == full.delays_ms == (0.0, 17.0)


def test_an_unknown_section_is_refused() -> None:
    with pytest.raises(SystemExit):
        bench.main(["--only", "proxy,gpu"])


def test_a_saved_results_file_is_rendered_into_the_document_keeping_other_sections(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(RESULTS))
    output = tmp_path / "performance.md"
    unet328 = "<!-- bench:unet328 -->\nbatch 8: 42/s\n<!-- /bench:unet328 -->\n"
    output.write_text(f"# Performance\n\n## unet328 engine\n\n{unet328}")
    bench.main(["--from-json", str(saved), "--output", str(output), "--only", "proxy,idle"])
    text = output.read_text()
    assert "batch 8: 42/s" in text
    for key in ("machine", "targets", "proxy", "idle"):
        assert f"<!-- bench:{key} -->" in text
    assert "<!-- bench:server -->" not in text, "only the sections asked for, with machine and targets"


def run_at(frames_per_s: float) -> RunResult:
    return RunResult("proxy v1", "ws", 64, 1, 1.0, [1.0] * int(frames_per_s), {}, 0)


def test_a_row_is_the_median_run_by_frames_per_second() -> None:
    runs = [run_at(5000), run_at(3000), run_at(4000)]
    assert median_run(runs).frames_per_s == 4000
    assert median_run([run_at(2), run_at(1)]).frames_per_s == 1
    assert median_run([run_at(7)]).frames_per_s == 7
