"""Server benchmarks: frames per second per core of the demo (sprite) avatar, and the JPEG splice.

    python -m loadtests.bench_server [--duration 3] [--cache-dir ~/.cache/lipsync] [--json out.json]

Runs in this process on one thread, so frames per CPU-second is frames per second per core:

- `full frame`: `lipsync_server.render.render` of the demo avatar's 1280×720 frames, as the server
  renders them (the sprite's face region spliced into the frame's cached restart-interval JPEG);
- `face crop`: the same with face-crop output;
- `full frame, whole-frame encode`: the baseline without the splice (composite into a copy of the
  frame, encode the whole frame);
- `whole-frame encode alone`: one 1280×720 JPEG encode, the ceiling of any whole-frame path.

And the splice micro-benchmark (`splice_table`): whole-frame encode against splicing, for a 180-px and
a 360-px face box and several restart intervals, with the bytes the markers add.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lipsync_server.demo import ensure_demo_package
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.jpeg import encode_jpeg
from lipsync_server.jpeg_splice import Box, SplicedFrame, encode_with_restarts
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import ModelPackage
from lipsync_server.render import OutputMode, RenderRequest, render
from lipsync_server.settings import Settings
from loadtests import procstat

QUALITY = 85
#: Distinct frames cycled through, so caches hold what a real stream would need.
FRAMES_USED = 50


@dataclass(frozen=True)
class Throughput:
    """Frames done by one thread: per CPU-second (per core) and per wall-second."""

    key: str
    name: str
    frames: int
    cpu_s: float
    wall_s: float
    bytes_per_frame: float
    load_average: tuple[float, float, float]

    @property
    def per_core(self) -> float:
        return self.frames / self.cpu_s if self.cpu_s > 0 else float("nan")

    @property
    def per_wall_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 / self.per_core


def measure(
    key: str, name: str, work: Callable[[int], int], duration_s: float, warmup: int = 20
) -> Throughput:
    """Call `work(i)` (returning bytes produced) for i = 0, 1, ... for `duration_s` after `warmup` calls."""
    for i in range(warmup):
        work(i)
    produced = 0
    frames = 0
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    while True:
        produced += work(frames)
        frames += 1
        if frames % 16 == 0 and time.perf_counter() - wall_start >= duration_s:
            break
    cpu_s, wall_s = time.process_time() - cpu_start, time.perf_counter() - wall_start
    return Throughput(key, name, frames, cpu_s, wall_s, produced / frames, procstat.load_average())


def demo_package(cache_dir: Path) -> tuple[SpriteEngine, ModelPackage]:
    """The demo avatar (generated on first use) prepared for the sprite engine."""
    engine = SpriteEngine()
    package = engine.prepare(load_package(ensure_demo_package(cache_dir)))
    engine.warm_up(package)
    return engine, package


def _box(package: ModelPackage, frame_id: int) -> Box:
    x1, y1, x2, y2 = (int(v) for v in package.boxes[frame_id])
    return x1, y1, x2, y2


def server_benchmarks(engine: SpriteEngine, package: ModelPackage, duration_s: float) -> list[Throughput]:
    """The sprite engine's full-frame and face-crop throughput, spliced as served and whole-frame."""

    def full(i: int) -> int:
        (frame,) = render(engine, package, [RenderRequest(frame_id=i % FRAMES_USED, jpeg_quality=QUALITY)])
        return len(frame.image)

    def crop(i: int) -> int:
        request = RenderRequest(
            frame_id=i % FRAMES_USED, output_mode=OutputMode.FACE_CROP, jpeg_quality=QUALITY
        )
        (frame,) = render(engine, package, [request])
        return len(frame.image)

    def whole(i: int) -> int:
        frame_id = i % FRAMES_USED
        (region,) = engine.infer(package, [FrameJob(frame_id)])
        x1, y1, x2, y2 = _box(package, frame_id)
        image = package.frames.frame(frame_id).copy()
        image[y1:y2, x1:x2] = region
        return len(encode_jpeg(image, QUALITY))

    still = np.array(package.frames.frame(0))

    def encode_only(i: int) -> int:
        return len(encode_jpeg(still, QUALITY))

    return [
        measure(
            "full", "full frame, as served (sprite region spliced into the cached JPEG)", full, duration_s
        ),
        measure("whole", "full frame, whole-frame encode (composite + encode, no splice)", whole, duration_s),
        measure("crop", "face crop", crop, duration_s),
        measure("encode", "whole-frame encode alone (1280×720)", encode_only, duration_s),
    ]


@dataclass(frozen=True)
class SpliceRow:
    box_px: int
    method: str
    restart_interval: int | None
    ms_per_frame: float
    speedup: float
    extra_bytes_pct: float


def _centered_box(frame: NDArray[np.uint8], size: int) -> Box:
    height, width = frame.shape[:2]
    x1, y1 = (width - size) // 2, (height - size) // 2
    return x1, y1, x1 + size, y1 + size


def _whole_frame_encoder(frame: NDArray[np.uint8], box: Box, face: NDArray[np.uint8]) -> Callable[[int], int]:
    x1, y1, x2, y2 = box

    def whole(i: int) -> int:
        composited = frame.copy()
        composited[y1:y2, x1:x2] = face
        return len(encode_jpeg(composited, QUALITY))

    return whole


def _splicer(cached: SplicedFrame, face: NDArray[np.uint8]) -> Callable[[int], int]:
    return lambda i: len(cached.encode(face))


def splice_table(
    frame: NDArray[np.uint8], duration_s: float, restart_intervals: Sequence[int] = (80, 16, 8, 1)
) -> list[SpliceRow]:
    """Whole-frame encode against splicing for a 180-px and a 360-px face, on one core."""
    rows = []
    plain = len(encode_jpeg(frame, QUALITY))
    rng = np.random.default_rng(0)
    for size in (180, 360):
        box = _centered_box(frame, size)
        x1, y1, x2, y2 = box
        face = np.ascontiguousarray(frame[y1:y2, x1:x2][:, ::-1])  # mirrored: other pixels, same texture
        face[size // 2 :, size // 4 : 3 * size // 4] = rng.integers(60, 200, 3, dtype=np.uint8)
        base = measure("whole", f"{size}px whole", _whole_frame_encoder(frame, box, face), duration_s)
        rows.append(SpliceRow(size, "whole frame", None, base.ms_per_frame, 1.0, 0.0))
        for interval in restart_intervals:
            cached = SplicedFrame.build(frame, box, QUALITY, interval)
            result = measure(f"R{interval}", f"{size}px R={interval}", _splicer(cached, face), duration_s)
            extra = len(encode_with_restarts(frame, QUALITY, interval)) / plain - 1
            method = "tiles" if interval < 80 else "strip (one interval per MCU row)"
            speedup = base.ms_per_frame / result.ms_per_frame
            rows.append(SpliceRow(size, method, interval, result.ms_per_frame, speedup, extra * 100))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Server benchmarks: sprite frames/s per core, JPEG splice.")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--cache-dir", type=Path, default=Settings().cache_dir, help="demo avatar cache")
    parser.add_argument("--json", type=Path, default=None, help="write the results here ('-' for stdout)")
    args = parser.parse_args(argv)
    engine, package = demo_package(args.cache_dir)
    results = server_benchmarks(engine, package, args.duration)
    splice = splice_table(np.array(package.frames.frame(0)), args.duration)
    document = {
        "server": [asdict(r) | {"per_core": r.per_core, "per_wall_s": r.per_wall_s} for r in results],
        "splice": [asdict(r) for r in splice],
    }
    text = json.dumps(document, indent=2) + "\n"
    if args.json is None or str(args.json) == "-":
        sys.stdout.write(text)
    else:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
