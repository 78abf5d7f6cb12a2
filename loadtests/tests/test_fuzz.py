"""`make fuzz`'s runner: the budget's shares, libFuzzer's output, and findings kept as regressions."""

from __future__ import annotations

from pathlib import Path

from loadtests import fuzz

OUTPUT = """\
INFO: Seed: 1
#2\tINITED cov: 40 ft: 41 corp: 3/30b exec/s: 0 rss: 40Mb
#90210\tDONE   cov: 62 ft: 70 corp: 9/88b lim: 4096 exec/s: 9021 rss: 45Mb
stat::number_of_executed_units: 90210
stat::average_exec_per_sec:     9021
Done 90210 runs in 11 second(s)
"""


def test_the_budget_is_shared_in_whole_seconds_and_never_below_one() -> None:
    assert fuzz.share(60, 6) == 10
    assert fuzz.share(5, 6) == 1
    assert fuzz.share(61, 6) == 10


def test_libfuzzers_final_stats_give_the_runs_coverage_and_corpus() -> None:
    result = fuzz.parse_output("v1", 11.04, OUTPUT, 0)

    assert (result.runs, result.coverage, result.features, result.corpus) == (90210, 62, 70, 9)
    assert (result.seconds, result.exit_code) == (11.0, 0)


def test_output_without_stats_gives_zeros_not_an_error() -> None:
    result = fuzz.parse_output("json", 1.0, "ERROR: something broke\n", 1)

    assert (result.runs, result.coverage, result.exit_code) == (0, 0, 1)


def test_findings_are_moved_into_the_regressions_named_by_kind_and_content(tmp_path: Path) -> None:
    found, regressions = tmp_path / "found", tmp_path / "repo" / "fuzz" / "regressions" / "v1"
    found.mkdir()
    (found / "crash-abc").write_bytes(b"\x01boom")
    (found / "timeout-def").write_bytes(b"slow")
    (found / "notes.txt").write_text("not a finding")

    kept = fuzz.keep_findings(found, regressions, root=tmp_path / "repo")

    assert [Path(path).name.split("-")[0] for path in sorted(kept)] == ["crash", "timeout"]
    assert sorted(path.read_bytes() for path in regressions.iterdir()) == [b"\x01boom", b"slow"]
    assert [path.name for path in found.iterdir()] == ["notes.txt"]


def test_every_target_has_its_seed_corpus() -> None:
    for target in fuzz.TARGETS:
        assert any(target.seeds.iterdir()), target.name
        assert (target.fuzz_dir / target.script).is_file(), target.name
