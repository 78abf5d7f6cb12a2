"""`lipsync-server convert`: the rebuilt modules, the checkpoint conventions, and the reference vectors
reproduced through the converted ONNX models and ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ConvertedModels, needs_torch, save_checkpoint
from reference_weights import (
    ENCODER_GAIN,
    ENCODER_LAYOUT,
    UNET_GAIN,
    UNET_LAYOUT,
    formula_state_dict,
    load_vector,
    read_layout,
)

from lipsync_server.convert_torch import (
    AUDIO_ENCODER,
    UNET,
    build_model,
    convert,
    detect_kind,
    load_checkpoint,
    main,
    normalise_keys,
)
from lipsync_server.engines.unet328 import open_session
from lipsync_server.errors import PackageError

UNET_VECTOR = load_vector("unet")
CPU = ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("layout", "model_name", "parameters"),
    [(UNET_LAYOUT, "UNet328", 12_186_935), (ENCODER_LAYOUT, "AudioEncoder", 2_812_672)],
)
def test_the_rebuilt_modules_have_the_reference_keys_shapes_and_sizes(
    layout: Path, model_name: str, parameters: int
) -> None:
    needs_torch()
    from lipsync_server import torch_models

    model = getattr(torch_models, model_name)()
    state = model.state_dict()
    assert [(key, tuple(value.shape)) for key, value in state.items()] == [
        (entry.key, entry.shape) for entry in read_layout(layout)
    ]
    assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize(
    ("layout", "gain", "vector"), [(UNET_LAYOUT, UNET_GAIN, "unet"), (ENCODER_LAYOUT, ENCODER_GAIN, "ave")]
)
def test_the_formula_weights_match_the_reference_sums(layout: Path, gain: float, vector: str) -> None:
    state = formula_state_dict(layout, gain)
    sums = [
        float(value.astype(np.float64).sum()) if value.dtype == np.float32 else 0.0
        for value in state.values()
    ]
    np.testing.assert_allclose(sums, load_vector(vector)["formula_tensor_sums"], rtol=1e-7, atol=0)
    first = next(iter(state.values()))
    expected = (
        [-0.42426321, -0.32867852, -0.21965484, -0.09719224]
        if vector == "unet"
        else [-0.66666532, -0.51646847, -0.34515429, -0.15272288]
    )
    np.testing.assert_allclose(first.ravel()[:4], expected, rtol=1e-7)


def test_the_rebuilt_audio_branch_reproduces_the_reference_intermediate() -> None:
    torch = needs_torch()
    state = {
        key: torch.from_numpy(np.asarray(v)) for key, v in formula_state_dict(UNET_LAYOUT, UNET_GAIN).items()
    }
    model = build_model(UNET, state, Path("formula"))
    with torch.no_grad():
        branch = model.audio_model(torch.from_numpy(UNET_VECTOR["a"])).numpy()
    np.testing.assert_allclose(branch, UNET_VECTOR["audio_branch"], rtol=0, atol=1e-4)


def test_the_converted_unet_reproduces_the_reference_output(converted_models: ConvertedModels) -> None:
    session = open_session(converted_models.unet, CPU)
    (y,) = session.run(None, {"input": UNET_VECTOR["x"], "audio": UNET_VECTOR["a"]})
    np.testing.assert_allclose(y, UNET_VECTOR["y"].astype(np.float32), rtol=0, atol=5e-4)
    np.testing.assert_allclose(y[:, :, 144:176, 144:176], UNET_VECTOR["y_center_f32"], rtol=0, atol=2e-5)
    # The audio matters: the same image with silence-like audio is far from the reference.
    (quiet,) = session.run(None, {"input": UNET_VECTOR["x"], "audio": np.zeros_like(UNET_VECTOR["a"])})
    assert np.abs(quiet - y).max() > 0.1


def test_the_converted_unet_has_the_reference_names_opset_and_a_dynamic_batch(
    converted_models: ConvertedModels,
) -> None:
    needs_torch()
    import onnx

    model = onnx.load(str(converted_models.unet), load_external_data=False)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    session = open_session(converted_models.unet, CPU)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("input", ["batch", 6, 320, 320]),
        ("audio", ["batch", 32, 16, 16]),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("output", ["batch", 3, 320, 320])]
    report = converted_models.unet_report
    assert report.max_abs_error is not None, "checked at batch 2 against torch"
    assert report.max_abs_error < 1e-4
    assert (report.kind, report.opset) == (UNET, 17)


def test_the_converted_encoder_has_the_reference_names_and_a_dynamic_batch(
    converted_models: ConvertedModels,
) -> None:
    session = open_session(converted_models.audio_encoder, CPU)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("mel_spectrogram", ["batch_size", 1, 80, 16])
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("audio_features", ["batch_size", 512])]
    assert (converted_models.encoder_report.kind, converted_models.encoder_report.opset) == (
        AUDIO_ENCODER,
        11,
    )


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model_state_dict", "model"])
def test_checkpoints_plain_or_wrapped_load_as_the_same_state(tmp_path: Path, wrapper: str | None) -> None:
    state = formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "encoder.pth", state, wrapper))
    assert list(loaded) == list(state)
    assert detect_kind(loaded) == AUDIO_ENCODER


def test_data_parallel_prefixes_and_missing_encoder_prefixes_are_normalised(tmp_path: Path) -> None:
    state = formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN)
    saved = {"module." + key.removeprefix("audio_encoder."): value for key, value in state.items()}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "encoder.pth", saved))
    assert list(normalise_keys(detect_kind(loaded), loaded)) == list(state)


def test_training_only_landmark_networks_are_dropped_from_a_unet_checkpoint() -> None:
    state = {"inc.inconv.0.conv.0.weight": 1, "pfld_backbone.conv1.weight": 2, "auxiliarynet.fc.bias": 3}
    assert list(normalise_keys(UNET, state)) == ["inc.inconv.0.conv.0.weight"]  # type: ignore[arg-type]
    assert detect_kind(state) == UNET


def test_a_checkpoint_with_a_missing_key_is_refused_naming_it(tmp_path: Path) -> None:
    state = formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN)
    del state["audio_encoder.5.conv_block.1.running_var"]
    checkpoint = save_checkpoint(tmp_path / "broken.pth", state)
    with pytest.raises(
        PackageError, match=r"1 missing key\(s\) \(audio_encoder\.5\.conv_block\.1\.running_var\)"
    ):
        convert(checkpoint, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path: Path) -> None:
    needs_torch()
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(PackageError, match=r"notes\.pth: is not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_the_convert_command_writes_the_model_and_reports_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN)
    checkpoint = save_checkpoint(tmp_path / "encoder.pth", state, "model_state_dict")
    assert main([str(checkpoint), str(tmp_path / "encoder.onnx")]) == 0
    out = capsys.readouterr().out
    assert "audio-encoder, opset 11" in out
    assert "max |ONNX - torch|" in out
    assert (tmp_path / "encoder.onnx").stat().st_size > 10_000_000
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "x.onnx")]) == 1
