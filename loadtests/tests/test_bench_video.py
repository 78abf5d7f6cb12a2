"""The video benchmark's measurement and its section of docs/performance.md, on a tiny scene."""

from __future__ import annotations

from unittest.mock import ANY

import numpy as np

from lipsync_server.video import VideoCodec
from loadtests import bench_video


def tiny_scene(count: int = 12) -> bench_video.Scene:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    boxes = np.tile(np.array([[40, 30, 80, 70]], np.int32), (count, 1))
    regions = [np.full((40, 40, 3), 20 * i, np.uint8) for i in range(count)]
    return bench_video.Scene("tiny", [base] * count, boxes, regions)


def test_a_measurement_encodes_and_decodes_every_frame_and_reports_bits_cpu_and_quality() -> None:
    row = bench_video.measure(tiny_scene(), VideoCodec.H264, "22")

    assert row["frames_decoded"] == 12
    assert row["crop"] == [48, 48]
    assert row["stage_cpu_ms_median"] == {"composite": ANY, "convert": ANY, "encode": ANY}
    assert row["server_default"] is True
    assert float(row["kbit_per_s"]) > 0  # type: ignore[arg-type]
    assert float(row["encode_cpu_ms_mean"]) >= 0  # type: ignore[arg-type]
    assert float(row["psnr_face_db_min"]) > 25, row  # type: ignore[arg-type]


def test_the_conversions_compared_each_give_a_time() -> None:
    times = bench_video.conversion(tiny_scene())

    assert set(times) == {"swscale", "opencv_copied", "opencv_in_place"}
    assert all(value >= 0 for value in times.values())


def test_the_document_section_names_its_command_and_every_row() -> None:
    row = bench_video.measure(tiny_scene(), VideoCodec.H264, "22")
    results: dict[str, object] = {
        "load_average": [1.0, 1.0, 1.0],
        "frames": 12,
        "demo": [row],
        "synctalk": [row],
        "sessions_per_core": {"encode_only": 60.0, "sprite_render_and_encode": 50.0},
        "sprite_render_cpu_ms_per_frame": 0.1,
        "conversion": {
            scene: {"swscale": 1.0, "opencv_copied": 0.5, "opencv_in_place": 0.25}
            for scene in ("demo", "synctalk")
        },
        "base_video": {"H264": {"bytes": 1000, "mbit_per_s": 0.5, "encode_s": 1.0}},
    }

    text = bench_video.document(results, "python -m loadtests.bench_video --frames 12")

    assert "`python -m loadtests.bench_video --frames 12`" in text
    assert text.count("| H264 | qp 22 * | 48×48 |") == 2
    assert "OpenCV's output as the planes (the server's way) 0.25 / 0.25" in text
    assert "H264 1,000 bytes = 0.5 Mbit/s" in text
