"""Fixtures of the neural-path tests: PyTorch when present, and the formula-weight models converted once."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# Helper modules of these tests (reference_weights, neural_doubles) live beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from reference_weights import (
    ENCODER_GAIN,
    ENCODER_LAYOUT,
    UNET_GAIN,
    UNET_LAYOUT,
    formula_state_dict,
)

from lipsync_server.convert_torch import ConversionReport, convert


def needs_torch() -> ModuleType:
    """PyTorch, the `convert` extra. Without it these tests are skipped, except in CI (`CI=true`), where
    the import error fails them: there nothing that should run may be skipped."""
    if os.environ.get("CI", "").lower() == "true":
        import torch

        return torch
    return pytest.importorskip("torch", reason="needs the convert extra: pip install torch==2.13.0 onnx")


def save_checkpoint(path: Path, state: dict[str, np.ndarray], wrapper: str | None = None) -> Path:
    """Save `state` as a PyTorch checkpoint, plain or wrapped under `wrapper` with training metadata."""
    torch = needs_torch()
    tensors = {key: torch.from_numpy(np.asarray(value)) for key, value in state.items()}
    torch.save(tensors if wrapper is None else {wrapper: tensors, "epoch": 7}, path)
    return path


@dataclass(frozen=True)
class ConvertedModels:
    """The reference formula-weight UNet-328 and AVE encoder, converted to ONNX by `convert`."""

    unet: Path
    audio_encoder: Path
    unet_report: ConversionReport
    encoder_report: ConversionReport


@pytest.fixture(scope="session")
def converted_models(tmp_path_factory: pytest.TempPathFactory) -> ConvertedModels:
    """Converted once per session: the UNet's export and check take about ten seconds."""
    directory = tmp_path_factory.mktemp("converted")
    # As the reference's checkpoints come: the UNet wrapped with its epoch, the encoder's keys without
    # their `audio_encoder.` prefix.
    unet_checkpoint = save_checkpoint(
        directory / "unet.pth", formula_state_dict(UNET_LAYOUT, UNET_GAIN), wrapper="state_dict"
    )
    encoder_state = {
        key.removeprefix("audio_encoder."): value
        for key, value in formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN).items()
    }
    encoder_checkpoint = save_checkpoint(directory / "audio_encoder.pth", encoder_state)
    unet_report = convert(unet_checkpoint, directory / "unet.onnx")
    encoder_report = convert(encoder_checkpoint, directory / "audio_encoder.onnx")
    return ConvertedModels(unet_report.output, encoder_report.output, unet_report, encoder_report)
