from __future__ import annotations

import numpy as np

from loadtests.bench_server import measure, splice_table


def test_a_measurement_counts_the_frames_and_bytes_of_its_window() -> None:
    calls: list[int] = []

    def work(i: int) -> int:
        calls.append(i)
        return 10

    result = measure("k", "ten bytes", work, duration_s=0.05, warmup=3)
    assert calls[:3] == [0, 1, 2]
    assert result.frames == len(calls) - 3
    assert result.frames % 16 == 0
    assert result.bytes_per_frame == 10
    assert result.wall_s >= 0.05


def test_the_splice_table_compares_every_restart_interval_with_the_whole_frame() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (384, 640, 3), dtype=np.uint8)
    rows = splice_table(frame, duration_s=0.02, restart_intervals=(40, 8, 1))
    assert [(row.box_px, row.restart_interval) for row in rows] == [
        (size, interval) for size in (180, 360) for interval in (None, 40, 8, 1)
    ]
    for row in rows:
        assert row.ms_per_frame > 0
        assert row.speedup > 0
    assert all(row.extra_bytes_pct > 0 for row in rows if row.restart_interval is not None)
