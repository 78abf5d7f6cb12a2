"""Served streams: how many 25-fps streams one real lipsync-server holds at p99 < 100 ms per frame, and
what that makes per GPU and per CPU core.

    python -m loadtests.served_streams [--engine demo|unet328] [--device cpu|cuda|auto]
        [--precision auto|fp32|fp16] [--unet unet.onnx --audio-encoder audio_encoder.onnx | --stand-in]
        [--fp16]
        [--max-batch 8] [--workers N] [--start 2] [--step 2] [--step-seconds 5] [--json F]

A lipsync-server is started here on a free loopback port and viewers (`loadtests.viewers`: one gRPC
`Infer` per frame, full 1280×720 JPEG frames, at most 8 outstanding each) are added step by step until a
step's p99 passes the threshold. Each step also records the CPU the server process used (all its
threads, /proc), as cores kept busy. The result:

- `capacity_streams`: the viewers of the last step that held;
- `streams_per_gpu`: that over the GPUs `nvidia-smi -L` lists (null on the CPU);
- `streams_per_core`: that over the cores the server kept busy at that step, and
  `streams_per_machine_core` over every core of the machine (the load generator runs here too).

The package: the demo avatar (`--engine demo`, the sprite engine), or (`--engine unet328`) the demo
avatar's frames, boxes and audio with a UNet-328 and an AVE encoder: `--unet`/`--audio-encoder`, by
default PyTorch's default-initialised models exported as `lipsync-server convert` exports them (needs
the `convert` extra; weights do not change the timing). `--fp16` puts their half-precision copies
beside them, which the server runs on CUDA under `--precision auto`. `--stand-in` serves models that
cost next to nothing instead (`stand_in_models`: the UNet returns the real ROI it is given), so that the
figure is the server's CPU side alone, as a GPU fast enough leaves it; on a CPU, where UNet-328 itself
takes 70 ms to a second per frame, that is the only unet328 figure under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

from lipsync_server.settings import Settings
from loadtests import procstat
from loadtests.processes import ServerProcess
from loadtests.progress import Progress
from loadtests.viewers import (
    Ramp,
    StepResult,
    add_ramp_arguments,
    capacity,
    ramp_from_args,
    summary,
    viewers_direct,
)

ENGINES = ("demo", "unet328")
UNET_MODEL = "bench-unet"
# Loading a unet328 package computes its features from its audio and, on CUDA, builds the convolution
# plans of every batch bucket: minutes on a slow CPU.
READY_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class ServedSetup:
    """The server under test."""

    engine: str = "demo"
    device: str = "auto"
    precision: str = "auto"
    max_batch: int = Settings.max_batch
    batch_wait_ms: float = Settings.batch_wait_ms
    # None: the server's default (one per core).
    workers: int | None = None
    # Stand-in models (`stand_in_models`): the server's CPU side alone.
    stand_in: bool = False

    def server_args(self) -> tuple[str, ...]:
        args = [
            "--device", self.device, "--precision", self.precision,
            "--max-batch", str(self.max_batch), "--batch-wait-ms", str(self.batch_wait_ms),
        ]  # fmt: skip
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        return tuple(args)


def gpu_count() -> int:
    """The NVIDIA GPUs `nvidia-smi -L` lists; 0 without the tool or a GPU."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def unet_package(demo: Path, directory: Path, unet: Path, encoder: Path, half: bool) -> Path:
    """A models directory holding one unet328 package: the demo avatar's frames, boxes and audio with
    these models (and, with `half`, their float16 copies beside them)."""
    from lipsync_server.half_precision import half_precision_path, to_half_precision

    root = directory / UNET_MODEL
    shutil.copytree(demo, root)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("sprite", None)
    manifest |= {"name": UNET_MODEL, "engine": "unet328"}
    manifest["models"] = {"unet": "unet.onnx", "audio_encoder": "audio_encoder.onnx"}
    for source, name in ((unet, "unet.onnx"), (encoder, "audio_encoder.onnx")):
        shutil.copyfile(source, root / name)
        if half:
            to_half_precision(root / name, half_precision_path(root / name))
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory


def stand_in_models(directory: Path) -> tuple[Path, Path]:
    """A UNet-328 and an AVE encoder with the real models' inputs and outputs and next to no work: the
    UNet returns its input's real ROI (channels 0-2), the encoder the first 512 mel values of its window.
    Needs the `onnx` package."""
    import onnx
    from onnx import TensorProto, helper

    def save(name: str, nodes: list[Any], inputs: list[Any], output: Any, constants: list[Any]) -> Path:
        graph = helper.make_graph(nodes, name, inputs, [output], initializer=constants)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        path = directory / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    def tensor(name: str, *shape: int | str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    def ints(name: str, *values: int) -> Any:
        return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))

    directory.mkdir(parents=True, exist_ok=True)
    unet = save(
        "stand_in_unet",
        [helper.make_node("Slice", ["input", "start", "end", "axis"], ["output"])],
        [tensor("input", "batch", 6, 320, 320), tensor("audio", "batch", 32, 16, 16)],
        tensor("output", "batch", 3, 320, 320),
        [ints("start", 0), ints("end", 3), ints("axis", 1)],
    )
    encoder = save(
        "stand_in_audio_encoder",
        [
            helper.make_node("Flatten", ["mel_spectrogram"], ["flat"], axis=1),
            helper.make_node("Slice", ["flat", "start", "end", "axis"], ["audio_features"]),
        ],
        [tensor("mel_spectrogram", "batch_size", 1, 80, 16)],
        tensor("audio_features", "batch_size", 512),
        [ints("start", 0), ints("end", 512), ints("axis", 1)],
    )
    return unet, encoder


def streams_summary(steps: Sequence[StepResult], ramp: Ramp, gpus: int, machine_cores: int) -> dict[str, Any]:
    """The viewers' ramp with what it holds per GPU and per core."""
    held = capacity(steps, ramp.threshold_ms)
    step = next((s for s in reversed(steps) if s.viewers == held and s.holds(ramp.threshold_ms)), None)
    cores = step.cores_busy if step is not None else None
    return {
        "capacity_streams": held,
        "frames_per_s": step.frames_per_s if step is not None else 0.0,
        "p99_ms": step.p99_ms if step is not None else None,
        "gpus": gpus,
        "streams_per_gpu": held / gpus if gpus else None,
        "server_cores_busy": cores,
        "streams_per_core": held / cores if cores else None,
        "machine_cores": machine_cores,
        "streams_per_machine_core": held / machine_cores,
        **summary(steps, ramp),
    }


def served_streams(setup: ServedSetup, ramp: Ramp, work_dir: Path, models_dir: Path | None) -> dict[str, Any]:
    """Start the server of `setup` (serving `models_dir`, else the demo avatar), ramp viewers against it."""
    extra = setup.server_args()
    if models_dir is not None:
        extra += ("--models-dir", str(models_dir))
    load_before = procstat.load_average()
    with ServerProcess(
        work_dir, cache_dir=Settings().cache_dir, extra_args=extra, ready_timeout_s=READY_TIMEOUT_S
    ) as server:
        pid = server.pid
        steps = uvloop.run(
            viewers_direct(
                server.address, ramp, Progress(every_s=0.0), lambda: procstat.cpu_times(pid).total_s
            )
        )
    return {
        "benchmark": "served_streams",
        "setup": asdict(setup),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": {"start": load_before, "end": procstat.load_average()},
        **streams_summary(steps, ramp, gpu_count() if setup.device != "cpu" else 0, os.cpu_count() or 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--engine", choices=ENGINES, default="demo")
    add("--device", default=ServedSetup.device, choices=("auto", "cpu", "cuda"))
    add("--precision", default=ServedSetup.precision, choices=("auto", "fp32", "fp16"))
    add("--unet", type=Path, help="UNet-328 ONNX model (default: exported default weights)")
    add("--audio-encoder", type=Path, help="AVE encoder ONNX model")
    add("--stand-in", action="store_true", help="serve stand-in models: the server's CPU side alone")
    add("--fp16", action="store_true", help="put the models' float16 copies beside them (needs onnx)")
    add("--max-batch", type=int, default=ServedSetup.max_batch)
    add("--batch-wait-ms", type=float, default=ServedSetup.batch_wait_ms)
    add("--workers", type=int, help="server worker threads (default: one per core)")
    add_ramp_arguments(parser, start=2, step=2)
    add("--json", type=Path, help="write the result here as well as to stdout")
    args = parser.parse_args(argv)
    setup = ServedSetup(
        args.engine,
        args.device,
        args.precision,
        args.max_batch,
        args.batch_wait_ms,
        args.workers,
        args.stand_in,
    )
    ramp = ramp_from_args(args, model="demo" if args.engine == "demo" else UNET_MODEL)
    with tempfile.TemporaryDirectory(prefix="served-streams-") as scratch:
        work = Path(scratch)
        models_dir = None
        if args.engine == "unet328":
            from lipsync_server.demo import ensure_demo_package

            unet, encoder = args.unet, args.audio_encoder
            if args.stand_in:
                unet, encoder = stand_in_models(work / "stand-in")
            elif unet is None or encoder is None:
                from loadtests.bench_engine import export_default_models

                unet, encoder = export_default_models(work)
            demo = ensure_demo_package(Settings().cache_dir)
            models_dir = unet_package(demo, work / "models", unet, encoder, args.fp16)
        result = served_streams(setup, ramp, work, models_dir)
    text = json.dumps(result, indent=2) + "\n"
    if args.json is not None:
        args.json.write_text(text)
    sys.stdout.write(text)
    sys.stderr.write(
        f"served streams: {result['capacity_streams']} at p99 < {ramp.threshold_ms:g} ms; "
        f"per GPU {result['streams_per_gpu']}, per busy core {result['streams_per_core']}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
