"""Benchmark of the unet328 engine's stages: milliseconds per frame, as JSON.

    python loadtests/bench_engine.py [--unet unet.onnx] [--audio-encoder audio_encoder.onnx]
                                     [--device cpu|cuda] [--batches 1,2,4,8] [--output result.json]

Stages, each timed on its own over a synthetic 1280×720 frame with a 180-px face box:

- `features_window`: the audio tensor of one frame from a 1 s request window (mel + the 16 AVE windows
  it hears), as `Infer` with audio computes it;
- `features_stream`: the same per frame of a stream fed 40 ms at a time, as a `Speak` session would;
- `input`: the 328 crop and the model's [6, 320, 320] input;
- `inference` at each batch size: one model call, per frame; `speedup_vs_batch1` compares it with batch 1
  measured in the same run;
- `composite`: the prediction into the crop, resized to the box, pasted into the full frame;
- `encode_full_frame` / `encode_face_crop`: JPEG at quality 85.

`runner_batching` measures the decision of lipsync_server.batching for the engine whose per-frame cost
batching cannot cut, the sprite engine: frames per second through InferenceRunner (2 workers, 32
concurrent callers, the demo avatar) without batching (`--max-batch 1`) and with it (`--max-batch 8`,
which for the sprite never waits and only takes what queued up), face crop and full frame.

Without `--unet` the models are PyTorch's default-initialised UNet-328 and AVE encoder exported by
`lipsync-server convert`'s exporter (needs the `convert` extra); weights do not change the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lipsync_server.ave import AudioEncoder, AveStream, window_audio
from lipsync_server.demo import ensure_demo_package
from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.engines.unet328 import (
    UnetModel,
    face_crop,
    face_region,
    fill_model_input,
    open_session,
    providers_for,
)
from lipsync_server.inference import InferenceRunner
from lipsync_server.jpeg import encode_jpeg
from lipsync_server.packages.loader import load_package
from lipsync_server.registry import ReadyModel
from lipsync_server.render import OutputMode, RenderRequest

WIDTH, HEIGHT = 1280, 720
BOX = np.array([550, 200, 730, 380], dtype=np.int32)
JPEG_QUALITY = 85
RUNNER_WORKERS = 2
RUNNER_CALLERS = 32


def export_default_models(directory: Path) -> tuple[Path, Path]:
    """Default-initialised UNet-328 and AVE encoder, exported as `convert` exports them."""
    from lipsync_server.convert_torch import AUDIO_ENCODER, SPECS, UNET, export_onnx
    from lipsync_server.torch_models import AudioEncoder as TorchEncoder
    from lipsync_server.torch_models import UNet328

    unet, encoder = directory / "unet.onnx", directory / "audio_encoder.onnx"
    export_onnx(UNet328().eval(), SPECS[UNET], unet)
    export_onnx(TorchEncoder().eval(), SPECS[AUDIO_ENCODER], encoder)
    return unet, encoder


def per_call_ms(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of one call of `function`, in milliseconds."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def synthetic_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 120, WIDTH, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 80, HEIGHT, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, 6, (HEIGHT, WIDTH, 3)).astype(np.float32)
    frame: np.ndarray = np.clip(x + y + noise + 40, 0, 255).astype(np.uint8)
    return frame


def speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    voice = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    return ((0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * voice * 0.2).astype(np.float32)


def run(
    unet_path: Path, encoder_path: Path, device: str, batches: list[int], repeats: int
) -> dict[str, object]:
    providers = providers_for(device)
    unet = UnetModel.of(open_session(unet_path, providers), unet_path)
    encoder = AudioEncoder(open_session(encoder_path, providers), encoder_path)
    frame = synthetic_frame()
    wave = speech(1.0)
    crop = face_crop(frame, BOX)
    images = np.empty((1, 6, 320, 320), np.float32)
    fill_model_input(crop, images[0])
    width, height = int(BOX[2] - BOX[0]), int(BOX[3] - BOX[1])

    def stream_per_frame() -> None:
        stream = AveStream(encoder)
        for start in range(0, wave.shape[0], 640):
            stream.push(wave[start : start + 640])
        stream.finish()

    def composite() -> None:
        region = face_region(crop, prediction, width, height)
        full = frame.copy()
        full[BOX[1] : BOX[3], BOX[0] : BOX[2]] = region

    full_frame = frame.copy()
    stages: dict[str, float] = {
        "features_window": per_call_ms(lambda: window_audio(encoder, wave, 8_000), repeats * 4),
        "features_stream": per_call_ms(stream_per_frame, repeats) / (wave.shape[0] / 640),
        "input": per_call_ms(lambda: fill_model_input(face_crop(frame, BOX), images[0]), repeats * 10),
    }
    inference: dict[str, dict[str, float]] = {}
    for batch in batches:
        batch_images = np.repeat(images, batch, axis=0)
        audio = np.random.default_rng(batch).uniform(0, 2, (batch, 32, 16, 16)).astype(np.float32)
        call_ms = per_call_ms(functools.partial(unet.run, batch_images, audio), repeats)
        inference[str(batch)] = {"ms_per_batch": call_ms, "ms_per_frame": call_ms / batch}
    baseline = inference[str(batches[0])]["ms_per_frame"]
    for figures in inference.values():
        figures["speedup_vs_batch1"] = baseline / figures["ms_per_frame"]
    prediction = unet.run(images, np.zeros((1, 32, 16, 16), np.float32))[0]
    stages["composite"] = per_call_ms(composite, repeats * 10)
    stages["encode_full_frame"] = per_call_ms(lambda: encode_jpeg(full_frame, JPEG_QUALITY), repeats * 10)
    stages["encode_face_crop"] = per_call_ms(
        lambda: encode_jpeg(np.ascontiguousarray(full_frame[BOX[1] : BOX[3], BOX[0] : BOX[2]]), JPEG_QUALITY),
        repeats * 10,
    )
    return {
        "benchmark": "unet328_engine",
        "device": device,
        "provider": unet.session.get_providers()[0],
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "frame": {"width": WIDTH, "height": HEIGHT, "box": BOX.tolist()},
        "stages_ms_per_frame": stages,
        "inference_by_batch": inference,
    }


async def _runner_fps(model: ReadyModel, max_batch: int, mode: OutputMode, frames: int) -> float:
    runner = InferenceRunner(RUNNER_WORKERS, 4 * RUNNER_CALLERS, max_batch=max_batch, batch_wait_ms=2.0)
    callers = asyncio.Semaphore(RUNNER_CALLERS)
    count = model.package.frame_count

    async def one(index: int) -> None:
        async with callers:
            await runner.render(model, [RenderRequest(index % count, mode)])

    try:
        await asyncio.gather(*(one(i) for i in range(RUNNER_CALLERS * 4)))  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(frames)))
        return frames / (time.perf_counter() - start)
    finally:
        runner.shutdown()


def runner_batching(cache: Path, rounds: int) -> dict[str, dict[str, float]]:
    """Sprite frames per second through the runner, unbatched and batched, alternating `rounds` times
    (median of each), so that both see the same machine."""
    engine = SpriteEngine()
    model = ReadyModel(engine.prepare(load_package(ensure_demo_package(cache))), engine)
    result = {}
    for mode, frames in ((OutputMode.FACE_CROP, 2000), (OutputMode.FULL_FRAME, 500)):
        rates: dict[int, list[float]] = {1: [], 8: []}
        for _ in range(rounds):
            for max_batch in rates:
                rates[max_batch].append(asyncio.run(_runner_fps(model, max_batch, mode, frames)))
        unbatched, batched = statistics.median(rates[1]), statistics.median(rates[8])
        result[mode.value] = {
            "frames_per_s_max_batch_1": unbatched,
            "frames_per_s_max_batch_8": batched,
            "ratio": batched / unbatched,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unet", type=Path, help="UNet-328 ONNX model (default: exported default weights)")
    parser.add_argument("--audio-encoder", type=Path, help="AVE encoder ONNX model")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--batches", default="1,2,4,8", help="comma-separated batch sizes, first = baseline")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--output", type=Path, help="write the JSON here as well as to stdout")
    parser.add_argument("--cache-dir", type=Path, help="demo avatar cache (default: a temporary one)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        if args.unet is None or args.audio_encoder is None:
            unet, encoder = export_default_models(Path(scratch))
        else:
            unet, encoder = args.unet, args.audio_encoder
        result = run(unet, encoder, args.device, batches, args.repeats)
        result["runner_batching"] = runner_batching(args.cache_dir or Path(scratch), args.repeats)
    text = json.dumps(result, indent=2)
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
