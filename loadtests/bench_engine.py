"""Benchmark of the unet328 engine's stages: milliseconds per frame, as JSON.

    python loadtests/bench_engine.py [--unet unet.onnx] [--audio-encoder audio_encoder.onnx]
                                     [--device cpu|cuda] [--batches 1,2,4,8] [--fp16] [--output result.json]
                                     [--runner-rounds N] [--unet-runner 1,8,16 --callers 64]

Stages, each timed on its own over a synthetic 1280×720 frame with a 180-px face box:

- `features_window`: the audio tensor of one frame from a 1 s request window (mel + the 16 AVE windows
  it hears), as `Infer` with audio computes it;
- `features_stream`: the same per frame of a stream fed 40 ms at a time, as a `Speak` session would;
- `input`: the 328 crop and the model's [6, 320, 320] input;
- `inference` at each batch size: one model call with the inputs and output in host memory, as the
  server calls it (on a GPU that includes the copies to and from the device), per batch and per frame;
  `speedup_vs_batch1` compares it with batch 1 measured in the same run. `first_call_ms` is the first
  call at that size, which on a GPU builds cuDNN's convolution plans for the new shape; the timed
  calls come after it and `--warmup` more. On CUDA, `ms_per_batch_resident` is the same call on
  inputs already on the GPU with the output left there (I/O binding): the model alone, so the
  difference is what the copies cost. `alternating_batches_4_2_ms_per_call` (CUDA only): the median
  call when calls alternate between batches of 4 and 2, on one plain session and on the engine's
  `ShapeStableSession` (a session per batch bucket);
- `fp16` (with `--fp16`): the UNet's half-precision copy (`lipsync-server convert --fp16`'s, made here
  unless `--unet`'s `name.fp16.onnx` is beside it) timed by batch size as `inference_by_batch`, and
  its output against the float32 model's on the same device and inputs (four synthetic frames):
  largest and mean |fp16 - fp32|, and the mouth region's difference in 8-bit levels
  (`half_precision.mouth_difference`). On a GPU that includes float16 arithmetic, which the CPU
  provider does not do (it computes float16 models in float32);
- `composite`: the prediction into the crop, resized to the box, pasted into the full frame;
- `encode_full_frame` / `encode_face_crop`: JPEG at quality 85.

`runner_batching` measures the decision of lipsync_server.batching for the engine whose per-frame cost
batching cannot cut, the sprite engine: frames per second through InferenceRunner (2 workers, 32
concurrent callers, the demo avatar) without batching (`--max-batch 1`) and with it (`--max-batch 8`,
which for the sprite never waits and only takes what queued up), face crop and full frame, median of
`--runner-rounds` rounds (0 skips it: it measures the sprite, whatever `--device` says).

`unet328_runner` (only with `--unet-runner 1,8,16`): frames per second of the unet328 engine itself
through InferenceRunner on `--device`, as a server with `--max-batch` of each value renders them:
a 25-frame package of the synthetic frame with its own audio features, `--callers` concurrent
one-frame calls, one worker per core, face crop and full frame. The engine's `warm_up` runs first, as
the server's package load does (its seconds are reported), then every batch size up to the largest is
rendered once, so the figures leave out building cuDNN plans.

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

from lipsync_server.ave import FEATURES, AudioEncoder, AveStream, window_audio
from lipsync_server.demo import ensure_demo_package
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.engines.unet328 import (
    ENCODER_ROLE,
    UNET_ROLE,
    Unet328Engine,
    UnetModel,
    face_crop,
    face_region,
    fill_model_input,
    open_session,
    providers_for,
    shape_stable,
)
from lipsync_server.half_precision import half_precision_path, mouth_difference, to_half_precision
from lipsync_server.inference import InferenceRunner
from lipsync_server.jpeg import encode_jpeg
from lipsync_server.mel import VIDEO_FPS
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import NATIVE_FORMAT, ArrayFrames, ModelPackage
from lipsync_server.registry import ReadyModel
from lipsync_server.render import OutputMode, RenderRequest

WIDTH, HEIGHT = 1280, 720
BOX = np.array([550, 200, 730, 380], dtype=np.int32)
JPEG_QUALITY = 85
RUNNER_WORKERS = 2
RUNNER_CALLERS = 32
CUDA = "CUDAExecutionProvider"
# Warm-up calls after the first one: on a GPU the first calls at a shape also grow ONNX Runtime's
# memory arena and load kernels; on a CPU one call settles it.
CUDA_WARMUP = 3
UNET_RUNNER_FRAMES = 25


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


def on_cuda(unet: UnetModel) -> bool:
    return bool(unet.session.get_providers()[0] == CUDA)


class ResidentCall:
    """One model call on inputs already in `device` memory ("cuda" or "cpu"), its output left there:
    the model's own time, without the host-device copies that `UnetModel.run` (and the server) pays."""

    def __init__(self, unet: UnetModel, images: np.ndarray, audio: np.ndarray, device: str) -> None:
        import onnxruntime

        self._session = unet.session
        # The device copies of the inputs, held here for as long as the binding uses them.
        self._inputs = {
            unet.image_input: onnxruntime.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(images), device, 0
            ),
            unet.audio_input: onnxruntime.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(audio), device, 0
            ),
        }
        self._binding = unet.session.io_binding()
        for name, value in self._inputs.items():
            self._binding.bind_ortvalue_input(name, value)
        self._binding.bind_output(unet.output, device)

    def __call__(self) -> None:
        self._session.run_with_iobinding(self._binding)
        # GPU work is asynchronous: the timer must stop only once the output is really there.
        self._binding.synchronize_outputs()

    def output(self) -> np.ndarray:
        """The last call's output, copied to host memory."""
        return np.asarray(self._binding.copy_outputs_to_cpu()[0])


def time_inference(
    unet: UnetModel, images: np.ndarray, batch: int, repeats: int, warmup: int
) -> dict[str, float]:
    """Figures of one batch size: the first call (on CUDA, building the cuDNN plans for the shape),
    then the median of `repeats` calls after `warmup` more, from host memory and (on CUDA) resident."""
    batch_images = np.repeat(images[:1], batch, axis=0)
    audio = np.random.default_rng(batch).uniform(0, 2, (batch, 32, 16, 16)).astype(np.float32)
    start = time.perf_counter()
    unet.run(batch_images, audio)
    first_ms = (time.perf_counter() - start) * 1000.0
    call_ms = per_call_ms(functools.partial(unet.run, batch_images, audio), repeats, warmup)
    figures = {
        "first_call_ms": first_ms,
        "ms_per_batch": call_ms,
        "ms_per_frame": call_ms / batch,
        "frames_per_s": 1000.0 * batch / call_ms,
    }
    if on_cuda(unet) and unet.fixed_batch in (None, batch):
        resident_ms = per_call_ms(ResidentCall(unet, batch_images, audio, "cuda"), repeats, warmup)
        figures["ms_per_batch_resident"] = resident_ms
        figures["frames_per_s_resident"] = 1000.0 * batch / resident_ms
    return figures


def alternating_ms(unet: UnetModel, images: np.ndarray, repeats: int) -> float:
    """Median time of a model call when calls alternate between batches of 4 and 2, each size already
    seen once: on CUDA a plain session rebuilds its cuDNN plans at every change of shape."""
    rng = np.random.default_rng(7)
    calls = []
    for batch in (4, 2):
        audio = rng.uniform(0, 2, (batch, 32, 16, 16)).astype(np.float32)
        calls.append(functools.partial(unet.run, np.repeat(images[:1], batch, axis=0), audio))
    for call in calls:
        call()
    times = []
    for index in range(2 * max(1, repeats // 4)):
        start = time.perf_counter()
        calls[index % 2]()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def half_precision_figures(
    unet: UnetModel,
    half_path: Path,
    providers: list[str],
    images: np.ndarray,
    batches: list[int],
    repeats: int,
    warmup: int,
) -> dict[str, object]:
    """The float16 copy `half_path` of `unet` by batch size, and its output against `unet`'s."""
    half = UnetModel.of(open_session(half_path, providers), half_path)
    by_batch = {str(batch): time_inference(half, images, batch, repeats, warmup) for batch in batches}
    audio = np.random.default_rng(3).uniform(0, 2, (4, 32, 16, 16)).astype(np.float32)
    frames = np.repeat(images[:1], 4, axis=0)
    full, reduced = unet.run(frames, audio), half.run(frames, audio)
    mouth = mouth_difference(full, reduced)
    return {
        "provider": half.session.get_providers()[0],
        "inference_by_batch": by_batch,
        "vs_fp32": {
            "max_abs": float(np.abs(reduced - full).max()),
            "mean_abs": float(np.abs(reduced - full).mean()),
            "mouth_mean_levels": mouth.mean_levels,
            "mouth_max_levels": mouth.max_levels,
            "mouth_changed": mouth.changed,
        },
    }


def run(
    unet_path: Path,
    encoder_path: Path,
    device: str,
    batches: list[int],
    repeats: int,
    warmup: int | None,
    half_path: Path | None = None,
) -> dict[str, object]:
    import onnxruntime

    providers = providers_for(device)
    unet = UnetModel.of(open_session(unet_path, providers), unet_path)
    # The encoder as the engine opens it (on CUDA one session per batch bucket), since its stages stand
    # for the server's feature paths, whose batch sizes vary from call to call.
    encoder_session = shape_stable(
        open_session(encoder_path, providers), lambda: open_session(encoder_path, providers)
    )
    encoder = AudioEncoder(encoder_session, encoder_path)
    if warmup is None:
        warmup = CUDA_WARMUP if on_cuda(unet) else 0
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
    encoder_warmup = 1 + warmup
    stages: dict[str, float] = {
        "features_window": per_call_ms(
            lambda: window_audio(encoder, wave, 8_000), repeats * 4, encoder_warmup
        ),
        "features_stream": per_call_ms(stream_per_frame, repeats, encoder_warmup) / (wave.shape[0] / 640),
        "input": per_call_ms(lambda: fill_model_input(face_crop(frame, BOX), images[0]), repeats * 10),
    }
    inference = {str(batch): time_inference(unet, images, batch, repeats, warmup) for batch in batches}
    baseline = inference[str(batches[0])]["ms_per_frame"]
    for figures in inference.values():
        figures["speedup_vs_batch1"] = baseline / figures["ms_per_frame"]
    if on_cuda(unet):
        stable = UnetModel.of(
            shape_stable(open_session(unet_path, providers), lambda: open_session(unet_path, providers)),
            unet_path,
        )
        shape_changes = {
            "plain_session": alternating_ms(unet, images, repeats),
            "shape_stable_session": alternating_ms(stable, images, repeats),
        }
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
        "providers": {"unet": unet.session.get_providers(), "audio_encoder": encoder_session.get_providers()},
        "onnxruntime": onnxruntime.__version__,
        "warmup_calls": warmup,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "frame": {"width": WIDTH, "height": HEIGHT, "box": BOX.tolist()},
        "stages_ms_per_frame": stages,
        "inference_by_batch": inference,
        **({"alternating_batches_4_2_ms_per_call": shape_changes} if on_cuda(unet) else {}),
        **(
            {"fp16": half_precision_figures(unet, half_path, providers, images, batches, repeats, warmup)}
            if half_path is not None
            else {}
        ),
    }


async def _runner_fps(
    model: ReadyModel,
    max_batch: int,
    mode: OutputMode,
    frames: int,
    workers: int = RUNNER_WORKERS,
    callers: int = RUNNER_CALLERS,
) -> float:
    runner = InferenceRunner(workers, 4 * callers, max_batch=max_batch, batch_wait_ms=2.0)
    gate = asyncio.Semaphore(callers)
    count = model.package.frame_count

    async def one(index: int) -> None:
        async with gate:
            await runner.render(model, [RenderRequest(index % count, mode)])

    try:
        await asyncio.gather(*(one(i) for i in range(callers * 4)))  # warm-up
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


def unet_package(unet_path: Path, encoder_path: Path, root: Path) -> ModelPackage:
    """A unet328 package of the synthetic frame, with its own (random) audio features."""
    frames = np.repeat(synthetic_frame()[None], UNET_RUNNER_FRAMES, axis=0)
    features = np.random.default_rng(1).normal(0, 1, (UNET_RUNNER_FRAMES, FEATURES)).astype(np.float32)
    return ModelPackage(
        name="bench",
        engine="unet328",
        format=NATIVE_FORMAT,
        root=root,
        fps=VIDEO_FPS,
        frames=ArrayFrames(frames),
        boxes=np.tile(BOX, (UNET_RUNNER_FRAMES, 1)),
        audio_features=features,
        model_files={UNET_ROLE: unet_path, ENCODER_ROLE: encoder_path},
    )


def unet_runner(
    unet_path: Path,
    encoder_path: Path,
    device: str,
    max_batches: list[int],
    callers: int,
    frames: int,
    rounds: int,
    root: Path,
) -> dict[str, dict[str, float]]:
    """unet328 frames per second through the runner at each `--max-batch`, alternating `rounds` times
    (median of each), face crop and full frame; and how long the engine's `warm_up` took."""
    engine = Unet328Engine(device)
    package = engine.prepare(unet_package(unet_path, encoder_path, root))
    # As the server loads a package; on CUDA that builds the cuDNN plans of the batch sizes up to
    # WARM_BATCH. Larger sizes build theirs on first use, once per server, so the timing leaves it out.
    start = time.perf_counter()
    engine.warm_up(package)
    warm_up_s = time.perf_counter() - start
    for size in range(1, max(max_batches) + 1):
        engine.infer(package, [FrameJob(i % package.frame_count) for i in range(size)])
    model = ReadyModel(package, engine)
    workers = os.cpu_count() or 1
    result: dict[str, dict[str, float]] = {"warm_up": {"seconds": warm_up_s}}
    for mode in (OutputMode.FACE_CROP, OutputMode.FULL_FRAME):
        rates: dict[int, list[float]] = {size: [] for size in max_batches}
        for _ in range(rounds):
            for max_batch in max_batches:
                fps = asyncio.run(_runner_fps(model, max_batch, mode, frames, workers, callers))
                rates[max_batch].append(fps)
        result[mode.value] = {
            f"frames_per_s_max_batch_{size}": statistics.median(r) for size, r in rates.items()
        }
    return result


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unet", type=Path, help="UNet-328 ONNX model (default: exported default weights)")
    parser.add_argument("--audio-encoder", type=Path, help="AVE encoder ONNX model")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--batches", default="1,2,4,8", help="comma-separated batch sizes, first = baseline")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument(
        "--warmup",
        type=int,
        help=f"untimed model calls per batch size after the first (default {CUDA_WARMUP} on CUDA, 0 on CPU)",
    )
    parser.add_argument(
        "--runner-rounds",
        type=int,
        help="rounds of the sprite runner_batching figures (default --repeats; 0 skips)",
    )
    parser.add_argument(
        "--unet-runner", type=_sizes, default=[], help="comma-separated --max-batch values for unet328_runner"
    )
    parser.add_argument(
        "--callers", type=int, default=RUNNER_CALLERS, help="concurrent calls in unet328_runner"
    )
    parser.add_argument(
        "--runner-frames", type=int, default=1000, help="timed frames per unet328_runner figure"
    )
    parser.add_argument("--unet-runner-rounds", type=int, default=3, help="rounds of unet328_runner (median)")
    parser.add_argument("--fp16", action="store_true", help="also time the UNet's float16 copy (needs onnx)")
    parser.add_argument("--output", type=Path, help="write the JSON here as well as to stdout")
    parser.add_argument("--cache-dir", type=Path, help="demo avatar cache (default: a temporary one)")
    args = parser.parse_args()
    batches = _sizes(args.batches)
    rounds = args.repeats if args.runner_rounds is None else args.runner_rounds
    with tempfile.TemporaryDirectory() as scratch:
        if args.unet is None or args.audio_encoder is None:
            unet, encoder = export_default_models(Path(scratch))
        else:
            unet, encoder = args.unet, args.audio_encoder
        half = None
        if args.fp16:
            half = half_precision_path(unet)
            if not half.is_file():
                # Not beside the model: the engine of unet328_runner would pick it up on CUDA.
                half = Path(scratch) / "half" / half.name
                to_half_precision(unet, half)
        result = run(unet, encoder, args.device, batches, args.repeats, args.warmup, half)
        if args.unet_runner:
            result["unet328_runner"] = {
                "callers": args.callers,
                "workers": os.cpu_count(),
                **unet_runner(
                    unet,
                    encoder,
                    args.device,
                    args.unet_runner,
                    args.callers,
                    args.runner_frames,
                    args.unet_runner_rounds,
                    Path(scratch),
                ),
            }
        if rounds > 0:
            result["runner_batching"] = runner_batching(args.cache_dir or Path(scratch), rounds)
    text = json.dumps(result, indent=2)
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
