"""`lipsync-server make-package`: a user's video, boxes, audio and models into a native package."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import save_checkpoint
from package_factory import (
    PLACEHOLDER_MODEL,
    synthetic_boxes,
    synthetic_frames,
    write_landmarks,
    write_video,
    write_wav,
)
from reference_weights import ENCODER_GAIN, ENCODER_LAYOUT, formula_state_dict

from lipsync_server.errors import PackageError
from lipsync_server.make_package import main, make_package
from lipsync_server.packages.model import NATIVE_FORMAT

FRAMES, WIDTH, HEIGHT = 10, 160, 120


@pytest.fixture
def footage(tmp_path: Path) -> Path:
    """A video of 10 frames, its boxes as JSON and as landmarks, a mono and a stereo WAV, a model."""
    source = tmp_path / "footage"
    write_video(source / "talk.mp4", synthetic_frames(FRAMES, WIDTH, HEIGHT))
    boxes = synthetic_boxes(FRAMES, WIDTH, HEIGHT)
    (source / "boxes.json").write_text(json.dumps(boxes.tolist()))
    write_landmarks(source / "landmarks", boxes)
    write_wav(source / "voice.wav", FRAMES / 25)
    write_wav(source / "stereo.wav", FRAMES / 25, channels=2)
    write_wav(source / "cd.wav", FRAMES / 25, sample_rate=44_100)
    (source / "unet.onnx").write_bytes(PLACEHOLDER_MODEL)
    return source


def test_a_unet_package_is_made_from_video_boxes_audio_and_model(footage: Path, tmp_path: Path) -> None:
    package = make_package(
        tmp_path / "out" / "me",
        video=footage / "talk.mp4",
        boxes=footage / "boxes.json",
        audio=footage / "voice.wav",
        unet=footage / "unet.onnx",
    )
    assert (package.name, package.engine, package.format) == ("me", "unet328", NATIVE_FORMAT)
    assert (package.frame_count, package.width, package.height, package.fps) == (FRAMES, WIDTH, HEIGHT, 25)
    np.testing.assert_array_equal(package.boxes, synthetic_boxes(FRAMES, WIDTH, HEIGHT))
    assert package.model_files["unet"].read_bytes() == PLACEHOLDER_MODEL
    assert (tmp_path / "out" / "me" / "frames.mp4").read_bytes() == (footage / "talk.mp4").read_bytes()
    assert package.audio_path is not None


def test_landmarks_give_the_same_boxes_and_no_model_makes_a_sprite_package(
    footage: Path, tmp_path: Path
) -> None:
    package = make_package(tmp_path / "sprite", video=footage / "talk.mp4", boxes=footage / "landmarks")
    assert package.engine == "sprite"
    np.testing.assert_array_equal(package.boxes, synthetic_boxes(FRAMES, WIDTH, HEIGHT))


def test_stereo_audio_is_mixed_down_to_mono(footage: Path, tmp_path: Path) -> None:
    package = make_package(
        tmp_path / "p", video=footage / "talk.mp4", boxes=footage / "boxes.json", audio=footage / "stereo.wav"
    )
    assert package.audio_path is not None
    with wave.open(str(package.audio_path)) as mono, wave.open(str(footage / "voice.wav")) as voice:
        assert (mono.getnchannels(), mono.getframerate()) == (1, 16_000)
        assert mono.readframes(mono.getnframes()) == voice.readframes(voice.getnframes())


def test_a_pytorch_audio_encoder_is_converted_on_the_way_in(footage: Path, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "encoder.pth", formula_state_dict(ENCODER_LAYOUT, ENCODER_GAIN))
    package = make_package(
        tmp_path / "p",
        video=footage / "talk.mp4",
        boxes=footage / "boxes.json",
        unet=footage / "unet.onnx",
        audio_encoder=checkpoint,
    )
    assert package.model_files["audio_encoder"].stat().st_size > 10_000_000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audio": "cd.wav"}, "ffmpeg -i cd.wav -ac 1 -ar 16000"),
        ({"boxes": "missing.json"}, "file is missing"),
        ({"video": "voice.wav"}, "cannot be opened as a video|no decodable video frames"),
        ({"audio_encoder": "unet.onnx", "unet": None}, "pass --unet too"),
    ],
)
def test_bad_inputs_are_refused_naming_the_file_and_leave_nothing_behind(
    footage: Path, tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    inputs: dict[str, Path | None] = {
        "video": footage / "talk.mp4",
        "boxes": footage / "boxes.json",
        "audio": footage / "voice.wav",
        "unet": footage / "unet.onnx",
    }
    inputs.update({key: None if value is None else footage / value for key, value in change.items()})
    with pytest.raises(PackageError, match=message):
        make_package(tmp_path / "out" / "p", **inputs)  # type: ignore[arg-type]
    assert not (tmp_path / "out" / "p").exists()
    assert not list((tmp_path / "out").glob(".p-*")), "no staging directory is left"


def test_boxes_that_do_not_match_the_frames_are_refused(footage: Path, tmp_path: Path) -> None:
    (footage / "short.json").write_text(json.dumps(synthetic_boxes(FRAMES - 1, WIDTH, HEIGHT).tolist()))
    with pytest.raises(PackageError, match=r"holds 9 boxes for the 10 frames of talk\.mp4"):
        make_package(tmp_path / "p", video=footage / "talk.mp4", boxes=footage / "short.json")


def test_an_existing_directory_is_never_overwritten(footage: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(PackageError, match="already exists"):
        make_package(tmp_path / "taken", video=footage / "talk.mp4", boxes=footage / "boxes.json")


def test_the_command_prints_the_package_summary(
    footage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--video", str(footage / "talk.mp4"), "--boxes", str(footage / "boxes.json"), "--name", "avatar"]
    assert main([str(tmp_path / "pkg"), *args, "--unet", str(footage / "unet.onnx")]) == 0
    out = capsys.readouterr().out
    assert "name:" in out
    assert "avatar" in out
    assert "unet328" in out
    assert main([str(tmp_path / "pkg"), *args]) == 1
    assert "already exists" in capsys.readouterr().err
