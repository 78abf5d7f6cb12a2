"""Benchmark of video output: bits per second, quality and encoder CPU per codec, and the base video.

    python -m loadtests.bench_video [--frames 200] [--output artifacts/bench_video.json]
                                    [--doc docs/performance.md]

Two face sizes, one after the other:

- `demo`: the demo avatar (1280×720, ~180×200-px face box), its face regions rendered by the sprite
  engine with the package's own audio, as a play session sends them;
- `synctalk`: a SyncTalk_2D-sized face: the same frames and regions scaled ×1.8 with bilinear
  interpolation (a ~330-px box, the size of SyncTalk_2D's 328-px crop at 720p). A synthetic stand-in
  for the face size, not a real recording: flat cartoon colours with soft edges, no skin texture and
  no camera noise, neither noise-like (which would inflate the cost) nor still (the head drifts, the
  mouth, eyes and brows move). A real recording's texture and its frame-to-frame noise cost more bits.

For each codec and each of its quality settings the session's crop windows are encoded exactly as the
server does (video.py: composite the window, BGR to I420, one chunk per frame at once) and decoded
again with PyAV. Reported per setting: kbit/s at 25 fps (every chunk, key frames included), the encoder
CPU per frame (window composite + conversion + encode, process CPU time, median and mean, and the median
of each of the three), and the PSNR over the face box of the decoded window against the server's own JPEG
composite (full frame at quality 85). `conversion` compares ways of turning the server setting's windows
from BGR into I420 frames: swscale (PyAV's reformat), OpenCV with a copy into PyAV's planes, and OpenCV's
output used as the planes (the server's way).
`sessions_per_core` is 40 ms over the mean CPU per frame of the sprite engine's render plus encoding.
`base_video` is the size of GetBaseVideo's file per codec and its bit rate over the video's duration.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext
from numpy.typing import NDArray

from lipsync_server.base_video import encode_base_video
from lipsync_server.demo import ensure_demo_package
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.jpeg import encode_jpeg
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import ModelPackage
from lipsync_server.video import (
    CODECS,
    VideoCodec,
    VideoEncoder,
    composite_window,
    crop_size,
    crop_window,
    i420_frame,
)
from loadtests import perfdoc
from loadtests.procstat import load_average

DECODERS = {VideoCodec.H264: "h264", VideoCodec.VP8: "vp8", VideoCodec.VP9: "vp9", VideoCodec.AV1: "libdav1d"}
# Each codec's constant-quality settings, around the server's default (the middle one).
QUALITIES = {
    VideoCodec.H264: ("20", "22", "24"),
    VideoCodec.VP8: ("4", "10", "20"),
    VideoCodec.VP9: ("25", "32", "40"),
    VideoCodec.AV1: ("28", "34", "40"),
}
FRAME_INTERVAL_MS = 40.0
STAGES = ("composite", "convert", "encode")


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255**2 / mse))


class Scene:
    """The frames, boxes and rendered regions of one face size."""

    def __init__(
        self,
        name: str,
        frames: list[NDArray[np.uint8]],
        boxes: NDArray[np.int32],
        regions: list[NDArray[np.uint8]],
    ) -> None:
        self.name = name
        self.frames = frames
        self.boxes = boxes
        self.regions = regions
        self.height, self.width = frames[0].shape[:2]
        # The server's JPEG composite of each frame, cut to the face box: what the page must match.
        self.reference = []
        for frame, box, region in zip(frames, boxes, regions, strict=True):
            x1, y1, x2, y2 = (int(v) for v in box)
            full = frame.copy()
            full[y1:y2, x1:x2] = region
            decoded = cv2.imdecode(np.frombuffer(encode_jpeg(full, 85), np.uint8), cv2.IMREAD_COLOR)
            self.reference.append(np.asarray(decoded)[y1:y2, x1:x2])


def demo_scene(package: ModelPackage, engine: SpriteEngine, count: int) -> tuple[Scene, float]:
    """The demo's first `count` frames, and the sprite engine's mean render ms per frame."""
    start = time.thread_time()
    regions = engine.infer(package, [FrameJob(i) for i in range(count)])
    render_ms = (time.thread_time() - start) * 1000 / count
    frames = [np.asarray(package.frames.frame(i)) for i in range(count)]
    return Scene("demo", frames, package.boxes[:count].astype(np.int32), regions), render_ms


def synctalk_scene(demo: Scene, scale: float = 1.8) -> Scene:
    """The demo scaled so its face box is SyncTalk-sized, cut back to 1280×720 around the face."""
    frames: list[NDArray[np.uint8]] = []
    regions: list[NDArray[np.uint8]] = []
    boxes = []
    for frame, box, region in zip(demo.frames, demo.boxes, demo.regions, strict=True):
        big = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        x1, y1, x2, y2 = (int(v * scale + 0.5) for v in box)
        left = min(max((x1 + x2) // 2 - 640, 0), big.shape[1] - 1280)
        top = min(max((y1 + y2) // 2 - 360, 0), big.shape[0] - 720)
        face = np.asarray(
            cv2.resize(region, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
        )
        frames.append(np.ascontiguousarray(big[top : top + 720, left : left + 1280], dtype=np.uint8))
        boxes.append((x1 - left, y1 - top, x2 - left, y2 - top))
        regions.append(face)
    return Scene("synctalk", frames, np.asarray(boxes, dtype=np.int32), regions)


def measure(scene: Scene, codec: VideoCodec, quality: str) -> dict[str, object]:
    size = crop_size(scene.boxes, scene.width, scene.height, CODECS[codec].block)
    encoder = VideoEncoder(codec, *size, 25.0, quality)
    decoder = av.CodecContext.create(DECODERS[codec], "r")
    assert isinstance(decoder, VideoCodecContext)
    # The CPU measured is the process's: a decoder's threads would still be busy during the next encode.
    decoder.thread_count = 1
    if codec is VideoCodec.AV1:
        decoder.options = {"max_frame_delay": "1"}
    total_bytes, cpu_ms, stages_ms, scores = 0, [], [], []
    for index, (frame, box, region) in enumerate(zip(scene.frames, scene.boxes, scene.regions, strict=True)):
        # Process time: SVT-AV1 encodes in threads of its own, whatever the caller's thread count.
        start = time.process_time()
        window = crop_window(box, size, scene.width, scene.height)
        pixels = composite_window(frame, window, box, region)
        composed = time.process_time()
        i420 = i420_frame(pixels)
        converted = time.process_time()
        chunk = encoder.encode_frame(i420, index * FRAME_INTERVAL_MS)
        done = time.process_time()
        cpu_ms.append((done - start) * 1000)
        stages_ms.append((composed - start, converted - composed, done - converted))
        total_bytes += len(chunk.data)
        decoded = decoder.decode(av.Packet(chunk.data))
        if decoded:
            image = np.asarray(decoded[0].to_ndarray(format="bgr24"), dtype=np.uint8)
            x1, y1, x2, y2 = (int(v) for v in box)
            face = image[y1 - window[1] : y2 - window[1], x1 - window[0] : x2 - window[0]]
            scores.append(psnr(face, scene.reference[index]))
    seconds = len(scene.frames) * FRAME_INTERVAL_MS / 1000
    return {
        "codec": codec.name,
        "quality": f"{CODECS[codec].quality_option[0]} {quality}",
        "server_default": quality == CODECS[codec].quality_option[1],
        "crop": list(size),
        "kbit_per_s": round(total_bytes * 8 / seconds / 1000, 1),
        "bytes_per_frame": round(total_bytes / len(scene.frames)),
        "encode_cpu_ms_median": round(statistics.median(cpu_ms), 3),
        "encode_cpu_ms_mean": round(statistics.fmean(cpu_ms), 3),
        "stage_cpu_ms_median": {
            stage: round(statistics.median(seconds) * 1000, 3)
            for stage, seconds in zip(STAGES, zip(*stages_ms, strict=True), strict=True)
        },
        "psnr_face_db_mean": round(statistics.fmean(scores), 2),
        "psnr_face_db_min": round(min(scores), 2),
        "frames_decoded": len(scores),
    }


def conversion(scene: Scene) -> dict[str, float]:
    """Median CPU ms per frame of three ways from a BGR window (H.264's crop size) to an I420 frame."""
    size = crop_size(scene.boxes, scene.width, scene.height, CODECS[VideoCodec.H264].block)
    windows = [
        composite_window(frame, crop_window(box, size, scene.width, scene.height), box, region)
        for frame, box, region in zip(scene.frames, scene.boxes, scene.regions, strict=True)
    ]

    def swscale(bgr: NDArray[np.uint8]) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")

    def opencv_copied(bgr: NDArray[np.uint8]) -> av.VideoFrame:
        i420 = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        return av.VideoFrame.from_ndarray(i420, format="yuv420p")

    ways = {"swscale": swscale, "opencv_copied": opencv_copied, "opencv_in_place": i420_frame}
    result = {}
    for name, convert in ways.items():
        cpu_ms = []
        for bgr in windows:
            start = time.process_time()
            convert(bgr)
            cpu_ms.append((time.process_time() - start) * 1000)
        result[name] = round(statistics.median(cpu_ms), 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200, help="frames per measurement (at 25 fps)")
    parser.add_argument("--codecs", default="H264,VP8,VP9,AV1")
    parser.add_argument("--base-codecs", default="H264", help="codecs whose base video is encoded")
    parser.add_argument("--output", type=Path, default=Path("artifacts/bench_video.json"))
    parser.add_argument("--doc", type=Path, default=None, help="write the 'video' section of this document")
    args = parser.parse_args(argv)
    codecs = [VideoCodec[name] for name in args.codecs.split(",")]
    with tempfile.TemporaryDirectory() as cache:
        engine = SpriteEngine()
        package = engine.prepare(load_package(ensure_demo_package(Path(cache))))
        demo, render_ms = demo_scene(package, engine, args.frames)
        scenes = [demo, synctalk_scene(demo)]
        results: dict[str, object] = {
            "machine": {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "av": av.__version__,
            },
            "frames": args.frames,
            "sprite_render_cpu_ms_per_frame": round(render_ms, 3),
        }
        for scene in scenes:
            rows = []
            for codec in codecs:
                for quality in QUALITIES[codec]:
                    row = measure(scene, codec, quality)
                    rows.append(row)
                    print(scene.name, json.dumps(row), flush=True)
            results[scene.name] = rows
        results["conversion"] = {scene.name: conversion(scene) for scene in scenes}
        print("conversion", json.dumps(results["conversion"]), flush=True)
        default = next(r for r in results["demo"] if r["codec"] == "H264" and r["server_default"])  # type: ignore[attr-defined]
        per_frame = render_ms + float(default["encode_cpu_ms_mean"])
        results["sessions_per_core"] = {
            "codec": "H264",
            "encode_only": round(FRAME_INTERVAL_MS / float(default["encode_cpu_ms_mean"]), 1),
            "sprite_render_and_encode": round(FRAME_INTERVAL_MS / per_frame, 1),
        }
        base = {}
        duration = package.frame_count / package.fps
        for name in args.base_codecs.split(","):
            start = time.perf_counter()
            data = encode_base_video(package, VideoCodec[name])
            base[name] = {
                "bytes": len(data),
                "mbit_per_s": round(len(data) * 8 / duration / 1e6, 3),
                "encode_s": round(time.perf_counter() - start, 1),
                "duration_s": duration,
            }
            print("base video", name, json.dumps(base[name]), flush=True)
        results["base_video"] = base
    results["load_average"] = [round(value, 2) for value in load_average()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    if args.doc is not None:
        command = "python -m loadtests.bench_video " + " ".join(argv if argv is not None else sys.argv[1:])
        perfdoc.write_section(args.doc, "video", document(results, command.strip()), "Video output")
        print(f"wrote the video section of {args.doc}")
    return 0


def document(results: dict[str, object], command: str) -> str:
    """The 'video' section of docs/performance.md."""
    headers = [
        "codec",
        "setting",
        "crop",
        "kbit/s",
        "CPU ms/frame (median)",
        "composite + convert + encode",
        "PSNR dB (mean)",
        "PSNR dB (min)",
    ]
    parts = [
        f"`{command}` (load average {results['load_average']}, {results['frames']} frames at 25 fps per row; "
        "`*` is the server's setting). CPU is the encoder's per frame and stream: composite of the crop "
        "window, BGR to I420, encode (each stage's median beside it). PSNR is over the face box, of the "
        "decoded window (PyAV) against the server's own JPEG composite at quality 85.",
    ]
    for scene, title in (
        ("demo", "Demo avatar (1280×720, ~180×200-px face)"),
        ("synctalk", "SyncTalk-sized face (~330 px, synthetic)"),
    ):
        rows = [
            [
                row["codec"],
                row["quality"] + (" *" if row["server_default"] else ""),
                "×".join(str(v) for v in row["crop"]),
                row["kbit_per_s"],
                row["encode_cpu_ms_median"],
                " + ".join(str(value) for value in row["stage_cpu_ms_median"].values()),
                row["psnr_face_db_mean"],
                row["psnr_face_db_min"],
            ]
            for row in results[scene]  # type: ignore[attr-defined]
        ]
        parts.append(f"**{title}**\n\n" + perfdoc.table(headers, rows))
    ways = results["conversion"]
    parts.append(
        "BGR to I420 per frame of H.264's crop, median ms, demo / SyncTalk-sized: "
        + ", ".join(
            f"{label} {ways['demo'][name]} / {ways['synctalk'][name]}"  # type: ignore[index]
            for name, label in (
                ("swscale", "swscale (PyAV's reformat)"),
                ("opencv_copied", "OpenCV copied into PyAV's planes"),
                ("opencv_in_place", "OpenCV's output as the planes (the server's way)"),
            )
        )
        + "."
    )
    sessions = results["sessions_per_core"]
    base = results["base_video"]
    parts.append(
        f"Sessions per core at 25 fps (H.264): {sessions['encode_only']} for the encoding alone, "  # type: ignore[index]
        f"{sessions['sprite_render_and_encode']} with the sprite engine's render "  # type: ignore[index]
        f"({results['sprite_render_cpu_ms_per_frame']} ms per frame) on top."
    )
    parts.append(
        "Base video of the demo (12 s, 1280×720): "
        + ", ".join(
            f"{name} {info['bytes']:,} bytes = {info['mbit_per_s']} Mbit/s, encoded in {info['encode_s']} s"
            for name, info in base.items()  # type: ignore[attr-defined]
        )
        + "."
    )
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
