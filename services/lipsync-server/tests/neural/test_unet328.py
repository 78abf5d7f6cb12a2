"""The unet328 engine: input assembly and compositing as the reference, package preparation, batches.

The UNet and encoder sessions are doubles (neural_doubles); the real converted models run in the
server integration test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from neural_doubles import (
    PROJECTION_TOLERANCE,
    EncoderSessionDouble,
    ModelFilesDouble,
    UnetSessionDouble,
    open_model_double,
)
from package_factory import PLACEHOLDER_MODEL, write_native_package, write_synctalk_package

from lipsync_server.ave import frame_audio, package_features, window_audio
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.unet328 import (
    MASK_COLUMNS,
    MASK_ROWS,
    Unet328Engine,
    face_region,
    fill_model_input,
)
from lipsync_server.errors import InvalidArgumentError, PackageError
from lipsync_server.mel import pcm16_to_float
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import ModelPackage


def synctalk(root: Path, *, encoder: bool = True, **options: object) -> ModelPackage:
    write_synctalk_package(root, **options)  # type: ignore[arg-type]
    if encoder:
        (root / "checkpoint").mkdir(exist_ok=True)
        (root / "checkpoint" / "audio_encoder.onnx").write_bytes(PLACEHOLDER_MODEL)
    return load_package(root)


def engine_with(files: ModelFilesDouble, device: str = "cpu") -> Unet328Engine:
    return Unet328Engine(device, open_model=files)


def test_the_model_reads_the_real_roi_then_the_masked_roi_over_255() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (328, 328, 3), dtype=np.uint8)
    out = np.empty((6, 320, 320), np.float32)
    fill_model_input(crop, out)
    real = crop[4:324, 4:324].transpose(2, 0, 1).astype(np.float32) / 255.0
    np.testing.assert_array_equal(out[:3], real)
    masked = real.copy()
    masked[:, 5:310, 5:315] = 0.0  # cv2.rectangle((5, 5, 310, 305)): x 5…314, y 5…309
    np.testing.assert_array_equal(out[3:], masked)
    assert (MASK_ROWS.start, MASK_ROWS.stop, MASK_COLUMNS.start, MASK_COLUMNS.stop) == (5, 310, 5, 315)


def test_the_prediction_replaces_the_centre_of_the_crop_and_is_resized_to_the_box() -> None:
    crop = np.full((328, 328, 3), 200, np.uint8)
    prediction = np.full((3, 320, 320), 0.5, np.float32)
    region = face_region(crop, prediction, 180, 164)
    assert region.shape == (164, 180, 3)
    assert region[82, 90].tolist() == [127, 127, 127], "0.5 × 255 truncated"
    assert region[0, 0].tolist() == [200, 200, 200], "the 4-pixel border keeps the crop"


def test_a_model_that_returns_its_real_roi_leaves_the_face_as_it_was(tmp_path: Path) -> None:
    package = synctalk(tmp_path / "p", width=320, height=240)
    unet = UnetSessionDouble()
    engine = engine_with(open_model_double(unet, EncoderSessionDouble()))
    package = engine.prepare(package)
    regions = engine.infer(package, [FrameJob(2), FrameJob(5)])
    for frame_id, region in zip((2, 5), regions, strict=True):
        x1, y1, x2, y2 = package.boxes[frame_id]
        original = package.frames.frame(frame_id)[y1:y2, x1:x2].astype(int)
        assert region.shape == original.shape
        assert np.abs(region.astype(int) - original).mean() < 2.0, "only resampling and truncation"
    (images, audio), *_ = unet.calls
    assert images.shape == (2, 6, 320, 320), "both frames in one batch"
    assert package.audio_features is not None
    np.testing.assert_array_equal(audio[1], frame_audio(package.audio_features, 5))


def test_the_package_rows_and_given_audio_tensors_drive_their_frames(tmp_path: Path) -> None:
    unet = UnetSessionDouble()
    engine = engine_with(open_model_double(unet, EncoderSessionDouble()))
    package = engine.prepare(synctalk(tmp_path / "p"))
    given = np.full((32, 16, 16), 0.25, np.float32)
    engine.infer(package, [FrameJob(0, given), FrameJob(11)])
    _images, audio = unet.calls[-1]
    np.testing.assert_array_equal(audio[0], given)
    assert package.audio_features is not None
    np.testing.assert_array_equal(audio[1], frame_audio(package.audio_features, 11))
    with pytest.raises(InvalidArgumentError, match=r"audio tensor \[32, 16, 16\]"):
        engine.infer(package, [FrameJob(0, np.zeros(512, np.float32))])


def test_audio_of_a_request_goes_through_the_packages_audio_encoder(tmp_path: Path) -> None:
    encoder = EncoderSessionDouble()
    engine = engine_with(open_model_double(UnetSessionDouble(), encoder))
    package = engine.prepare(synctalk(tmp_path / "p"))
    pcm = (np.sin(np.arange(16_000) / 7.0) * 9000).astype(np.int16)
    tensor = engine.features_from_audio(package, pcm, 16_000, 8_000)
    np.testing.assert_allclose(
        tensor,
        window_audio(encoder.encoder, pcm16_to_float(pcm), 8_000),
        rtol=PROJECTION_TOLERANCE,
        atol=PROJECTION_TOLERANCE,
    )
    with pytest.raises(InvalidArgumentError, match="16000"):
        engine.features_from_audio(package, pcm, 8_000, 100)


def test_without_an_audio_encoder_only_the_packages_own_features_drive_the_mouth(tmp_path: Path) -> None:
    engine = engine_with(open_model_double(UnetSessionDouble()))
    package = engine.prepare(synctalk(tmp_path / "p", encoder=False))
    assert len(engine.infer(package, [FrameJob(1)])) == 1
    with pytest.raises(InvalidArgumentError, match="has no audio encoder"):
        engine.features_from_audio(package, np.zeros(640, np.int16), 16_000, 320)
    with pytest.raises(InvalidArgumentError, match="has no audio encoder"):
        engine.speech_stream(package)


def test_a_model_exported_with_a_fixed_batch_of_one_runs_a_batch_frame_by_frame(tmp_path: Path) -> None:
    unet = UnetSessionDouble(batch=1, image_name="visual_input", audio_name="audio_input")
    engine = engine_with(open_model_double(unet))
    package = engine.prepare(synctalk(tmp_path / "p", encoder=False))
    assert len(engine.infer(package, [FrameJob(0), FrameJob(1), FrameJob(2)])) == 3
    assert [images.shape[0] for images, _audio in unet.calls] == [1, 1, 1]


def test_a_native_package_with_only_audio_gets_features_from_its_encoder(tmp_path: Path) -> None:
    write_native_package(
        tmp_path / "n",
        engine="unet328",
        feature_columns=None,
        models={"unet": "unet.onnx", "audio_encoder": "audio_encoder.onnx"},
    )
    encoder = EncoderSessionDouble()
    engine = engine_with(open_model_double(UnetSessionDouble(), encoder))
    package = engine.prepare(load_package(tmp_path / "n"))
    assert package.audio_path is not None
    from lipsync_server.audio import read_wav

    pcm, _rate = read_wav(package.audio_path)
    assert package.audio_features is not None
    np.testing.assert_allclose(
        package.audio_features,
        package_features(encoder.encoder, pcm16_to_float(pcm)),
        rtol=PROJECTION_TOLERANCE,
        atol=PROJECTION_TOLERANCE,
    )


def test_a_package_with_neither_audio_nor_features_follows_silence(tmp_path: Path) -> None:
    write_native_package(
        tmp_path / "n",
        engine="unet328",
        audio=False,
        feature_columns=None,
        models={"unet": "unet.onnx", "audio_encoder": "audio_encoder.onnx"},
    )
    engine = engine_with(open_model_double(UnetSessionDouble(), EncoderSessionDouble()))
    package = engine.prepare(load_package(tmp_path / "n"))
    assert package.audio_features is not None
    assert package.audio_features.shape == (12, 512)
    assert (package.audio_features == package.audio_features[0]).all()


@pytest.mark.parametrize(
    ("options", "encoder", "message"),
    [
        ({"checkpoint": False}, True, "has no UNet model"),
        ({"fps": 30}, True, "runs at 30 fps"),
        ({"features": False}, False, "needs AVE features"),
    ],
)
def test_a_package_the_engine_cannot_run_is_refused_with_the_reason(
    tmp_path: Path, options: dict[str, object], encoder: bool, message: str
) -> None:
    package = synctalk(tmp_path / "p", encoder=encoder, **options)
    engine = engine_with(open_model_double(UnetSessionDouble(), EncoderSessionDouble()))
    with pytest.raises(PackageError, match=message):
        engine.prepare(package)


def test_native_features_must_be_ave_rows(tmp_path: Path) -> None:
    write_native_package(tmp_path / "n", engine="unet328", feature_columns=2, models={"unet": "unet.onnx"})
    engine = engine_with(open_model_double(UnetSessionDouble()))
    with pytest.raises(PackageError, match=r"needs \[frames, 512\]"):
        engine.prepare(load_package(tmp_path / "n"))


def test_the_device_chooses_the_execution_providers(tmp_path: Path) -> None:
    package = synctalk(tmp_path / "p", encoder=False)
    files = open_model_double(UnetSessionDouble())
    engine_with(files, "cpu").prepare(package)
    assert files.providers == [["CPUExecutionProvider"]]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(PackageError, match="no CUDA provider"):
            engine_with(files, "cuda").prepare(package)
        engine_with(files, "auto").prepare(package)
        assert files.providers[-1] == ["CPUExecutionProvider"]


def test_a_real_onnx_file_that_is_not_a_model_is_refused_naming_it(tmp_path: Path) -> None:
    package = synctalk(tmp_path / "p", encoder=False)
    with pytest.raises(PackageError, match=r"model_best\.onnx: is not an ONNX model"):
        Unet328Engine("cpu").prepare(package)


class CudaUnetSessionDouble(UnetSessionDouble):
    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("session", "device"), [(UnetSessionDouble(), "cpu"), (CudaUnetSessionDouble(), "cuda")]
)
def test_the_engines_device_is_where_onnx_runtime_runs_the_unet(
    tmp_path: Path, session: UnetSessionDouble, device: str
) -> None:
    engine = engine_with(open_model_double(session, EncoderSessionDouble()))
    package = engine.prepare(synctalk(tmp_path / "p", width=320, height=240))

    assert engine.device(package) == device
