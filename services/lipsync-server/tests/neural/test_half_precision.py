"""Half-precision copies of UNet-328 and the AVE encoder (`lipsync-server convert --fp16`), checked against
the reference vectors and the float32 models, and where the engine runs them.

These run on ONNX Runtime's CPU provider, which has no float16 convolutions on x86: it casts the float16
weights up and computes in float32. So what is checked here is the rounding of the weights to float16;
float16 arithmetic (rounded activations) happens only on a GPU, where `loadtests/bench_engine.py --fp16`
measures the same differences.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ConvertedModels, needs_torch, save_checkpoint
from neural_doubles import EncoderSessionDouble, ModelFilesDouble, UnetSessionDouble
from package_factory import PLACEHOLDER_MODEL, write_synctalk_package
from reference_weights import ENCODER_GAIN, ENCODER_LAYOUT, formula_state_dict, load_vector

from lipsync_server.ave import AudioEncoder, frame_audio, package_features
from lipsync_server.convert_torch import AUDIO_ENCODER, UNET, HalfPrecisionReport, half_precision, main
from lipsync_server.engines.unet328 import Unet328Engine, open_session
from lipsync_server.errors import PackageError
from lipsync_server.half_precision import half_precision_path, mouth_difference
from lipsync_server.packages.loader import load_package

UNET_VECTOR = load_vector("unet")
AVE = load_vector("ave")
MEL = load_vector("mel")
CPU = ["CPUExecutionProvider"]
CUDA = "CUDAExecutionProvider"
# |float16 model - reference| on the reference vector: measured 2.7e-3 for the UNet (its output is in
# (0, 1)), 3.5e-3 for AVE features of magnitude up to 5.4.
UNET_TOLERANCE = 1e-2
ENCODER_TOLERANCE = 1e-2
# The mouth as the engine composites it (8-bit levels): measured mean 0.10, max 1; the reference's own
# audio against silence moves it by 31.8 levels on average.
MOUTH_MEAN_LEVELS = 0.5
MOUTH_MAX_LEVELS = 2


@pytest.fixture(scope="module")
def half_unet(converted_models: ConvertedModels) -> HalfPrecisionReport:
    return half_precision(converted_models.unet, UNET)


@pytest.fixture(scope="module")
def half_encoder(converted_models: ConvertedModels) -> HalfPrecisionReport:
    return half_precision(converted_models.audio_encoder, AUDIO_ENCODER)


def unet_output(path: Path, audio: np.ndarray) -> np.ndarray:
    (y,) = open_session(path, CPU).run(None, {"input": UNET_VECTOR["x"], "audio": audio})
    return np.asarray(y, dtype=np.float32)


def test_the_half_precision_unet_holds_float16_weights_and_float32_inputs_and_outputs(
    half_unet: HalfPrecisionReport, converted_models: ConvertedModels
) -> None:
    needs_torch()
    import onnx

    model = onnx.load(str(half_unet.output))
    float16 = onnx.TensorProto.FLOAT16
    convolution_weights = {node.input[1] for node in model.graph.node if node.op_type == "Conv"}
    weights = [init for init in model.graph.initializer if init.name in convolution_weights]
    assert len(weights) == 93, "every convolution of UNet-328"
    assert all(weight.data_type == float16 for weight in weights)
    assert {i.name: i.type.tensor_type.elem_type for i in model.graph.input} == {
        "input": onnx.TensorProto.FLOAT,
        "audio": onnx.TensorProto.FLOAT,
    }
    assert half_unet.output == converted_models.unet.with_name("unet.fp16.onnx")
    assert half_unet.size_bytes < 0.55 * converted_models.unet.stat().st_size


def test_the_half_precision_unet_reproduces_the_reference_output_within_its_tolerance(
    half_unet: HalfPrecisionReport, converted_models: ConvertedModels
) -> None:
    half = unet_output(half_unet.output, UNET_VECTOR["a"])
    full = unet_output(converted_models.unet, UNET_VECTOR["a"])
    reference = UNET_VECTOR["y"].astype(np.float32)
    np.testing.assert_allclose(half, reference, rtol=0, atol=UNET_TOLERANCE)
    np.testing.assert_allclose(half, full, rtol=0, atol=UNET_TOLERANCE)
    assert np.abs(half - full).max() > 1e-5, "the float16 weights are a different model, not a copy"
    assert half_unet.max_abs_error <= UNET_TOLERANCE


def test_the_half_precision_unet_draws_the_same_mouth_to_a_level(
    half_unet: HalfPrecisionReport, converted_models: ConvertedModels
) -> None:
    full = unet_output(converted_models.unet, UNET_VECTOR["a"])
    mouth = mouth_difference(full, unet_output(half_unet.output, UNET_VECTOR["a"]))
    assert mouth.mean_levels <= MOUTH_MEAN_LEVELS
    assert mouth.max_levels <= MOUTH_MAX_LEVELS
    # The measure sees lip-sync: other audio moves the same mouth by tens of levels.
    silent = mouth_difference(full, unet_output(converted_models.unet, np.zeros_like(UNET_VECTOR["a"])))
    assert silent.mean_levels > 40 * MOUTH_MEAN_LEVELS
    assert half_unet.mouth is not None
    assert half_unet.mouth.max_levels <= MOUTH_MAX_LEVELS, "the converter's own check, on its inputs"


def test_the_half_precision_encoder_reproduces_the_reference_features_and_audio_tensors(
    half_encoder: HalfPrecisionReport,
) -> None:
    encoder = AudioEncoder(open_session(half_encoder.output, CPU), half_encoder.output)
    np.testing.assert_allclose(encoder(AVE["x"][:, 0]), AVE["y"], rtol=0, atol=ENCODER_TOLERANCE)
    rows = package_features(encoder, MEL["wave"])
    frames = np.stack([frame_audio(rows, i) for i in range(49)])
    np.testing.assert_allclose(frames, AVE["audio_frames"], rtol=0, atol=ENCODER_TOLERANCE)
    assert half_encoder.mouth is None


def test_the_convert_command_writes_the_half_precision_copy_beside_an_onnx_model(
    converted_models: ConvertedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = shutil.copy(converted_models.audio_encoder, tmp_path / "audio_encoder.onnx")
    assert main([str(model), "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "audio_encoder.fp16.onnx: float16" in out
    assert "max |fp16 - fp32|" in out
    assert (tmp_path / "audio_encoder.fp16.onnx").is_file()
    assert main([str(model), "--fp16", "--fp16-tolerance", "1e-9"]) == 1
    assert "float16 differs from float32" in capsys.readouterr().err
    assert not (tmp_path / "audio_encoder.fp16.onnx").exists(), "a copy beyond the tolerance is removed"


def test_the_convert_command_converts_a_checkpoint_and_its_half_precision_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_checkpoint(tmp_path / "encoder.pth", formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN))
    assert main([str(checkpoint), str(tmp_path / "encoder.onnx"), "--fp16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "max |ONNX - torch|" in lines[0]
    assert "encoder.fp16.onnx: float16" in lines[1]


class PathsDouble(ModelFilesDouble):
    """`open_model` recording which files were opened."""

    def __init__(self) -> None:
        unet, encoder = UnetSessionDouble(), EncoderSessionDouble()
        super().__init__(
            {
                "model_best.onnx": unet,
                "model_best.fp16.onnx": unet,
                "audio_encoder.onnx": encoder,
                "audio_encoder.fp16.onnx": encoder,
            }
        )
        self.opened: list[str] = []

    def __call__(self, path: Path, providers: object) -> object:
        self.opened.append(path.name)
        return super().__call__(path, providers)  # type: ignore[arg-type]


def package_with_half_copies(root: Path, half: bool = True) -> Path:
    write_synctalk_package(root)
    checkpoint = root / "checkpoint"
    (checkpoint / "audio_encoder.onnx").write_bytes(PLACEHOLDER_MODEL)
    if half:
        for name in ("model_best.onnx", "audio_encoder.onnx"):
            half_precision_path(checkpoint / name).write_bytes(PLACEHOLDER_MODEL)
    return root


@pytest.mark.parametrize(
    ("providers", "precision", "opened"),
    [
        ([CUDA, "CPUExecutionProvider"], "auto", ["model_best.fp16.onnx", "audio_encoder.fp16.onnx"]),
        (["CPUExecutionProvider"], "auto", ["model_best.onnx", "audio_encoder.onnx"]),
        ([CUDA, "CPUExecutionProvider"], "fp32", ["model_best.onnx", "audio_encoder.onnx"]),
        (["CPUExecutionProvider"], "fp16", ["model_best.fp16.onnx", "audio_encoder.fp16.onnx"]),
    ],
)
def test_the_engine_runs_the_half_precision_copies_on_cuda_and_float32_on_the_cpu(
    tmp_path: Path, providers: list[str], precision: str, opened: list[str]
) -> None:
    files = PathsDouble()
    engine = Unet328Engine(precision=precision, open_model=files, providers=lambda _device: providers)
    engine.prepare(load_package(package_with_half_copies(tmp_path / "p")))
    assert files.opened == opened


def test_a_package_without_half_precision_copies_runs_float32_on_cuda_unless_fp16_is_demanded(
    tmp_path: Path,
) -> None:
    package = load_package(package_with_half_copies(tmp_path / "p", half=False))
    cuda = [CUDA, "CPUExecutionProvider"]
    files = PathsDouble()
    Unet328Engine(open_model=files, providers=lambda _device: cuda).prepare(package)
    assert files.opened == ["model_best.onnx", "audio_encoder.onnx"]
    strict = Unet328Engine(precision="fp16", open_model=files, providers=lambda _device: cuda)
    with pytest.raises(PackageError, match=r"model_best\.fp16\.onnx: is missing: --precision fp16"):
        strict.prepare(package)
