"""`lipsync-server convert`: SyncTalk_2D PyTorch checkpoints to the ONNX models the unet328 engine runs.

Two models, with the names, opsets and dynamic batch axis of the SyncTalk_2D reference's own exports:

| kind | inputs → output | opset | batch axis |
|---|---|---|---|
| `unet328` | `input` [N,6,320,320], `audio` [N,32,16,16] → `output` [N,3,320,320] | 17 | `batch` |
| `audio-encoder` | `mel_spectrogram` [N,1,80,16] → `audio_features` [N,512] | 11 | `batch_size` |

A checkpoint is a plain state_dict or one wrapped under `state_dict`, `model_state_dict` or `model`
(with training metadata beside it). Keys saved from `nn.DataParallel` lose their `module.` prefix; the
landmark networks some UNet training checkpoints carry (`pfld_backbone.*`, `auxiliarynet.*`) are dropped;
audio encoder keys saved without their `audio_encoder.` prefix get it. The weights must then match the
model exactly (`strict` loading): a missing or unexpected key is refused, named.

After export the ONNX model is run with ONNX Runtime on a batch of two deterministic inputs and
compared with PyTorch; a difference above the tolerance refuses the file.

`--fp16` also writes the model's half-precision copy beside it (`name.fp16.onnx`, see half_precision),
run on the same inputs and compared with the float32 model; with an `.onnx` file instead of a
checkpoint it writes only that copy (no PyTorch needed, only `onnx`). For the UNet the report adds the
mouth region's difference in 8-bit levels.

PyTorch is the optional `convert` extra (`pip install 'lipsync-server[convert]'`) and is imported only
here, never by the server.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import PackageError
from lipsync_server.half_precision import (
    DEFAULT_HALF_TOLERANCE,
    MouthDifference,
    half_precision_path,
    max_difference,
    mouth_difference,
    to_half_precision,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)

UNET = "unet328"
AUDIO_ENCODER = "audio-encoder"
KINDS = (UNET, AUDIO_ENCODER)
# Observed differences between ONNX Runtime (CPU) and PyTorch are ~5e-6; a wrong graph is off by 1e-2+.
DEFAULT_TOLERANCE = 1e-4
VERIFY_BATCH = 2
_WRAPPERS = ("state_dict", "model_state_dict", "model")
_PARALLEL_PREFIX = "module."
_ENCODER_PREFIX = "audio_encoder."
# Training-time landmark networks saved beside the UNet in some checkpoints; not part of the model.
_UNET_EXTRA_PREFIXES = ("pfld_backbone", "auxiliarynet")
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class ModelSpec:
    """How one kind of model is exported and checked."""

    kind: str
    inputs: tuple[str, ...]
    output: str
    batch_axis: str
    opset: int
    # Shapes of one input item, without the batch axis, and the range its test values are drawn from.
    input_shapes: tuple[tuple[int, ...], ...]
    input_ranges: tuple[tuple[float, float], ...]


SPECS = {
    UNET: ModelSpec(
        UNET,
        ("input", "audio"),
        "output",
        "batch",
        17,
        ((6, 320, 320), (32, 16, 16)),
        ((0.0, 1.0), (0.0, 2.0)),
    ),
    AUDIO_ENCODER: ModelSpec(
        AUDIO_ENCODER,
        ("mel_spectrogram",),
        "audio_features",
        "batch_size",
        11,
        ((1, 80, 16),),
        ((-4.0, 4.0),),
    ),
}


@dataclass(frozen=True)
class ConversionReport:
    kind: str
    output: Path
    opset: int
    size_bytes: int
    # Largest |ONNX Runtime - PyTorch| over the verification batch; None when not verified.
    max_abs_error: float | None
    half: HalfPrecisionReport | None = None


@dataclass(frozen=True)
class HalfPrecisionReport:
    """The half-precision copy of a converted model and how far it is from the float32 one."""

    output: Path
    size_bytes: int
    # Largest |float16 - float32| over the verification batch (ONNX Runtime's CPU provider).
    max_abs_error: float
    # The UNet's mouth region, in 8-bit levels; None for the encoder.
    mouth: MouthDifference | None


class TorchMissingError(RuntimeError):
    """PyTorch is not installed (it is the optional `convert` extra)."""


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise TorchMissingError(
            "lipsync-server convert needs PyTorch: pip install 'lipsync-server[convert]'"
        ) from exc
    return torch


def load_checkpoint(path: Path) -> dict[str, Tensor]:
    """The state_dict of checkpoint `path`, unwrapped from `state_dict` / `model_state_dict` / `model`."""
    torch = _torch()
    try:
        # weights_only: a checkpoint is data; never run the pickled code of a file someone sent.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise PackageError(path, "file is missing") from exc
    except Exception as exc:
        raise PackageError(path, f"is not a PyTorch checkpoint that loads safely: {exc}") from exc
    state = _unwrap(loaded, path)
    if all(key.startswith(_PARALLEL_PREFIX) for key in state):
        state = {key[len(_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return state


def _unwrap(loaded: object, path: Path) -> dict[str, Tensor]:
    torch = _torch()
    if isinstance(loaded, Mapping):
        for wrapper in _WRAPPERS:
            inner = loaded.get(wrapper)
            if isinstance(inner, Mapping):
                loaded = inner
                break
        if loaded and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
            return dict(loaded)
    raise PackageError(
        path,
        "holds no state_dict: expected a mapping of parameter names to tensors, plain or under "
        + ", ".join(repr(w) for w in _WRAPPERS),
    )


def detect_kind(state: Mapping[str, object]) -> str:
    """UNET or AUDIO_ENCODER, from the key names of a state_dict."""
    if any(key.startswith(("audio_model.", "inc.", "fuse_conv.")) for key in state):
        return UNET
    if any(key.startswith(_ENCODER_PREFIX) or key.split(".", 2)[1:2] == ["conv_block"] for key in state):
        return AUDIO_ENCODER
    raise ValueError("the keys are neither a SyncTalk_2D UNet-328's nor an AVE audio encoder's")


def normalise_keys(kind: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state` with the key conventions of the reference's models (see the module docstring)."""
    if kind == UNET:
        dropped = [key for key in state if key.startswith(_UNET_EXTRA_PREFIXES)]
        if dropped:
            logger.info("dropping %d training-only keys (%s, ...)", len(dropped), dropped[0])
        return {key: value for key, value in state.items() if key not in dropped}
    return {
        key if key.startswith(_ENCODER_PREFIX) else _ENCODER_PREFIX + key: value
        for key, value in state.items()
    }


def build_model(kind: str, state: Mapping[str, Tensor], source: Path) -> nn.Module:
    """The eval-mode model of `kind` holding `state`; PackageError naming `source` when they differ."""
    from lipsync_server.torch_models import AudioEncoder, UNet328

    model: nn.Module = UNet328() if kind == UNET else AudioEncoder()
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise PackageError(
            source,
            f"does not match a {kind} model: "
            + _listing("missing", missing)
            + _listing("unexpected", unexpected),
        )
    wrong = [
        f"{key} {list(state[key].shape)} (expected {list(value.shape)})"
        for key, value in expected.items()
        if tuple(state[key].shape) != tuple(value.shape)
    ]
    if wrong:
        raise PackageError(
            source, f"has tensors of the wrong shape for a {kind} model: " + "; ".join(wrong[:3])
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _listing(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    return f"{len(keys)} {what} key(s) ({shown}); "


def sample_inputs(spec: ModelSpec, batch: int = VERIFY_BATCH) -> list[NDArray[np.float32]]:
    """Deterministic float32 inputs of `batch` items for a model of `spec`, in its typical value ranges."""
    rng = np.random.default_rng(20240607)
    return [
        rng.uniform(low, high, (batch, *shape)).astype(np.float32)
        for shape, (low, high) in zip(spec.input_shapes, spec.input_ranges, strict=True)
    ]


def export_onnx(model: nn.Module, spec: ModelSpec, output: Path, opset: int | None = None) -> int:
    """Export eval-mode `model` to `output` (written atomically) with the names and dynamic batch axis of
    `spec`; returns the opset used."""
    torch = _torch()
    opset = opset or spec.opset
    examples = tuple(torch.from_numpy(array) for array in sample_inputs(spec, batch=1))
    names = (*spec.inputs, spec.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=output.name, suffix=".tmp", dir=output.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter is deprecated in favour of the dynamo one, which cannot write
            # opset 17 for this model (it keeps 18); the reference's packages are opset 17.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                examples,
                temporary,
                input_names=list(spec.inputs),
                output_names=[spec.output],
                dynamic_axes={name: {0: spec.batch_axis} for name in names},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        os.replace(temporary, output)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return opset


def verify_onnx(model: nn.Module, spec: ModelSpec, path: Path) -> float:
    """Largest |ONNX Runtime - PyTorch| of `path` against `model` on a batch of VERIFY_BATCH items."""
    import onnxruntime

    torch = _torch()
    inputs = sample_inputs(spec)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run([spec.output], dict(zip(spec.inputs, inputs, strict=True)))
    with torch.no_grad():
        theirs = model(*(torch.from_numpy(array) for array in inputs)).numpy()
    if ours.shape != theirs.shape:
        raise PackageError(path, f"ONNX output has shape {list(ours.shape)}, PyTorch's {list(theirs.shape)}")
    return float(np.abs(np.asarray(ours) - theirs).max())


def half_precision(source: Path, kind: str, tolerance: float = DEFAULT_HALF_TOLERANCE) -> HalfPrecisionReport:
    """Write the half-precision copy of float32 ONNX model `source` of `kind` beside it and check it
    against `source` on the verification batch; PackageError (and no file) beyond `tolerance`."""
    spec = SPECS[kind]
    output = half_precision_path(source)
    to_half_precision(source, output)
    error, reference, half = max_difference(source, output, spec.inputs, sample_inputs(spec))
    if error > tolerance:
        output.unlink(missing_ok=True)
        raise PackageError(
            output, f"float16 differs from float32 by {error:.3g} (tolerance {tolerance:g}); removed"
        )
    mouth = mouth_difference(reference, half) if kind == UNET else None
    return HalfPrecisionReport(output, output.stat().st_size, error, mouth)


def onnx_kind(path: Path) -> str:
    """The kind of ONNX model `path`, from its input names; PackageError when it is neither."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise PackageError(path, f"is not an ONNX model ONNX Runtime can run: {exc}") from exc
    names = tuple(arg.name for arg in session.get_inputs())
    for kind, spec in SPECS.items():
        if names == spec.inputs:
            return kind
    raise PackageError(path, f"has inputs {list(names)}, neither a UNet-328's nor an AVE encoder's")


def convert(
    checkpoint: Path,
    output: Path,
    *,
    kind: str | None = None,
    opset: int | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    half: bool = False,
    half_tolerance: float = DEFAULT_HALF_TOLERANCE,
) -> ConversionReport:
    """Convert `checkpoint` (.pth) to ONNX model `output`, and with `half` its half-precision copy
    beside it; `kind` None detects it from the keys."""
    state = load_checkpoint(checkpoint)
    if kind is None:
        try:
            kind = detect_kind(state)
        except ValueError as exc:
            raise PackageError(checkpoint, f"{exc}; pass --kind") from exc
    if kind not in SPECS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    spec = SPECS[kind]
    model = build_model(kind, normalise_keys(kind, state), checkpoint)
    used_opset = export_onnx(model, spec, output, opset)
    error = None
    if verify:
        error = verify_onnx(model, spec, output)
        if error > tolerance:
            output.unlink(missing_ok=True)
            raise PackageError(
                output, f"ONNX Runtime differs from PyTorch by {error:.3g} (tolerance {tolerance:g}); removed"
            )
    copy = half_precision(output, kind, half_tolerance) if half else None
    return ConversionReport(kind, output, used_opset, output.stat().st_size, error, copy)


def _half_line(report: HalfPrecisionReport) -> str:
    size = report.size_bytes / 2**20
    line = f"{report.output}: float16, {size:.2f} MiB, max |fp16 - fp32| {report.max_abs_error:.2e}"
    if report.mouth is not None:
        mouth = report.mouth
        line += (
            f", mouth {mouth.mean_levels:.3f} levels on average (max {mouth.max_levels}, "
            f"{100 * mouth.changed:.1f}% of values changed)"
        )
    return line


def main(argv: Sequence[str]) -> int:
    """`lipsync-server convert CHECKPOINT OUTPUT [--kind K] [--opset N] [--no-verify] [--fp16]`, or
    `lipsync-server convert MODEL.onnx --fp16`."""
    parser = argparse.ArgumentParser(
        prog="lipsync-server convert",
        description="Convert a SyncTalk_2D PyTorch checkpoint (UNet-328 or AVE audio encoder) to ONNX; "
        "with --fp16 also (or, given an .onnx model, only) its half-precision copy NAME.fp16.onnx.",
    )
    parser.add_argument("checkpoint", type=Path, help=".pth file (plain or wrapped state_dict), or .onnx")
    parser.add_argument("output", type=Path, nargs="?", help="ONNX file to write (not for an .onnx input)")
    parser.add_argument("--kind", choices=KINDS, help="model kind (default: detected from the keys)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 17 for the UNet, 11 for the encoder)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |ONNX - torch|")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the ORT check")
    parser.add_argument(
        "--fp16", action="store_true", help="also write the half-precision copy NAME.fp16.onnx beside OUTPUT"
    )
    parser.add_argument(
        "--fp16-tolerance", type=float, default=DEFAULT_HALF_TOLERANCE, help="max |fp16 - fp32|"
    )
    args = parser.parse_args(argv)
    if args.checkpoint.suffix == ".onnx":
        if not args.fp16 or args.output is not None:
            parser.error("an .onnx input takes --fp16 and no OUTPUT: its copy goes beside it")
        try:
            half = half_precision(args.checkpoint, onnx_kind(args.checkpoint), args.fp16_tolerance)
        except PackageError as error:
            print(f"lipsync-server convert: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(_half_line(half))
        return 0
    if args.output is None:
        parser.error("OUTPUT is required for a checkpoint")
    try:
        report = convert(
            args.checkpoint,
            args.output,
            kind=args.kind,
            opset=args.opset,
            verify=args.verify,
            tolerance=args.tolerance,
            half=args.fp16,
            half_tolerance=args.fp16_tolerance,
        )
    except TorchMissingError as error:
        print(f"lipsync-server convert: {error}", file=sys.stderr)
        return EXIT_USAGE
    except PackageError as error:
        print(f"lipsync-server convert: {error}", file=sys.stderr)
        return EXIT_FAILED
    difference = report.max_abs_error
    checked = "not verified" if difference is None else f"max |ONNX - torch| {difference:.2e}"
    size = report.size_bytes / 2**20
    print(f"{report.output}: {report.kind}, opset {report.opset}, {size:.2f} MiB, {checked}")
    if report.half is not None:
        print(_half_line(report.half))
    return 0
