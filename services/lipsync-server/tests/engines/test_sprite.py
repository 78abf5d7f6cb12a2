"""The sprite engine: package preparation and the mouth it draws into the face box."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from lipsync_server.audio import features_at, frame_features, write_wav
from lipsync_server.engines.base import FrameJob
from lipsync_server.engines.sprite import NEUTRAL_FEATURES, SpriteEngine, SpriteStyle, draw_mouth
from lipsync_server.errors import InvalidArgumentError, PackageError
from lipsync_server.packages.model import ArrayFrames, ModelPackage

FRAMES, HEIGHT, WIDTH = 3, 360, 480
BOX = (150, 100, 331, 303)  # 181×203, odd on purpose
CLOSED = np.array([0.0, 0.5], dtype=np.float32)
OPEN = np.array([1.0, 0.5], dtype=np.float32)


def make_package(
    root: Path = Path("/nonexistent/package"),
    features: NDArray[np.float32] | None = None,
    audio: Path | None = None,
    options: Mapping[str, object] | None = None,
) -> ModelPackage:
    """A package of noise frames, so that any stray write outside the mouth shows."""
    pixels = np.random.default_rng(1).integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    return ModelPackage(
        name="sprite-test",
        engine="sprite",
        format="lipsync-package/1",
        root=root,
        fps=25.0,
        frames=ArrayFrames(pixels),
        boxes=np.array([BOX] * FRAMES, dtype=np.int32),
        audio_features=features,
        audio_path=audio,
        engine_options={} if options is None else options,
    )


def render(
    package: ModelPackage, features: NDArray[np.float32] | None, frame_id: int = 0
) -> NDArray[np.uint8]:
    return SpriteEngine().infer(package, [FrameJob(frame_id, features)])[0]


def changed(region: NDArray[np.uint8], package: ModelPackage, frame_id: int = 0) -> NDArray[np.bool_]:
    """Pixels of `region` that differ from the package's base frame."""
    x1, y1, x2, y2 = BOX
    base = package.frames.frame(frame_id)[y1:y2, x1:x2]
    return np.asarray((region != base).any(axis=2))


def test_the_region_has_the_shape_of_the_face_box() -> None:
    region = render(make_package(), OPEN)
    assert region.shape == (BOX[3] - BOX[1], BOX[2] - BOX[0], 3)
    assert region.dtype == np.uint8


def test_open_and_closed_mouths_differ_only_in_the_mouth_area() -> None:
    package = make_package()
    engine = SpriteEngine()
    closed, open_ = engine.infer(package, [FrameJob(0, CLOSED), FrameJob(0, OPEN)])
    height, width = closed.shape[:2]
    # The mouth sits at (0.5, 0.75) of the box and is 0.36 of its width: allow it 0.3 each side.
    mouth = np.zeros((height, width), dtype=bool)
    mouth[round(0.55 * height) : round(0.95 * height), round(0.2 * width) : round(0.8 * width)] = True
    differ = (closed != open_).any(axis=2)
    assert differ.sum() > 1000
    assert not (differ & ~mouth).any()
    assert not (changed(open_, package) & ~mouth).any()


def test_an_open_mouth_is_dark_inside_where_a_closed_one_shows_the_lower_lip() -> None:
    package = make_package()
    height, width = BOX[3] - BOX[1], BOX[2] - BOX[0]
    below_lip_line = (round(0.75 * height) + 4, width // 2)
    style = SpriteStyle()
    assert list(render(package, OPEN)[below_lip_line]) == list(reversed(style.inner_color))
    assert list(render(package, CLOSED)[below_lip_line]) == list(reversed(style.lip_color))


def test_a_wide_mouth_is_wider_and_flatter_than_a_round_one() -> None:
    package = make_package()
    wide = changed(render(package, np.array([1.0, 0.0], dtype=np.float32)), package)
    round_ = changed(render(package, np.array([1.0, 1.0], dtype=np.float32)), package)
    assert np.ptp(np.flatnonzero(wide.any(axis=0))) > np.ptp(np.flatnonzero(round_.any(axis=0))) + 10
    assert np.ptp(np.flatnonzero(round_.any(axis=1))) > np.ptp(np.flatnonzero(wide.any(axis=1))) + 5


def test_a_closed_mouth_is_the_same_whatever_the_roundness() -> None:
    package = make_package()
    a = render(package, np.array([0.0, 0.0], dtype=np.float32))
    b = render(package, np.array([0.0, 1.0], dtype=np.float32))
    assert np.array_equal(a, b)


def test_features_outside_the_unit_range_are_clamped() -> None:
    package = make_package()
    assert np.array_equal(
        render(package, np.array([7.0, -3.0], dtype=np.float32)),
        render(package, np.array([1.0, 0.0], dtype=np.float32)),
    )
    assert np.array_equal(render(package, np.array([np.nan, 0.5], dtype=np.float32)), render(package, CLOSED))


def test_the_package_frame_is_left_untouched() -> None:
    package = make_package()
    before = package.frames.frame(0).copy()
    render(package, OPEN)
    assert np.array_equal(package.frames.frame(0), before)


def test_a_job_without_features_uses_the_package_features_of_its_frame() -> None:
    own = np.array([[0.0, 0.5], [0.9, 0.2], [0.4, 0.8]], dtype=np.float32)
    package = make_package(features=own)
    engine = SpriteEngine()
    regions = engine.infer(package, [FrameJob(1), FrameJob(1, own[1]), FrameJob(2), FrameJob(2, own[2])])
    assert np.array_equal(regions[0], regions[1])
    assert np.array_equal(regions[2], regions[3])
    assert not np.array_equal(regions[0], regions[2])


def test_job_features_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match=r"\[openness, roundness\]"):
        render(make_package(), np.zeros(512, dtype=np.float32))


def test_the_mouth_follows_the_manifest_position_and_width() -> None:
    package = make_package(options={"mouth_center": [0.3, 0.4], "mouth_width": 0.2})
    mask = changed(render(package, OPEN), package)
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    assert abs(xs.mean() - 0.3 * width) < 3
    assert abs(ys.min() - 0.4 * height) < 15
    assert np.ptp(xs) < 0.2 * width * 1.35


def test_preparing_a_package_with_audio_computes_its_features(tmp_path: Path) -> None:
    t = np.arange(16000 * FRAMES // 25) / 16000
    pcm = (8000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)
    write_wav(tmp_path / "audio.wav", pcm, 16000)
    prepared = SpriteEngine().prepare(make_package(tmp_path, audio=tmp_path / "audio.wav"))
    assert prepared.audio_features is not None
    assert np.array_equal(prepared.audio_features, frame_features(pcm, 16000, 25.0, FRAMES))


def test_preparing_a_package_without_audio_or_features_keeps_the_mouth_closed() -> None:
    prepared = SpriteEngine().prepare(make_package())
    assert prepared.audio_features is not None
    assert (prepared.audio_features == NEUTRAL_FEATURES).all()
    assert prepared.audio_features.shape == (FRAMES, 2)


def test_preparing_keeps_features_the_package_already_has() -> None:
    own = np.full((FRAMES, 2), 0.25, dtype=np.float32)
    package = make_package(features=own)
    assert SpriteEngine().prepare(package) is package


def test_features_of_the_wrong_shape_are_a_package_error() -> None:
    with pytest.raises(PackageError, match=r"needs \[3, 2\]"):
        SpriteEngine().prepare(make_package(features=np.zeros((FRAMES, 512), dtype=np.float32)))


def test_features_that_are_not_finite_are_a_package_error() -> None:
    features = np.zeros((FRAMES, 2), dtype=np.float32)
    features[1, 0] = np.inf
    with pytest.raises(PackageError, match="NaN or infinite"):
        SpriteEngine().prepare(make_package(features=features))


def test_an_audio_file_that_is_not_pcm16_wav_is_a_package_error_naming_it(tmp_path: Path) -> None:
    audio = tmp_path / "audio.wav"
    audio.write_bytes(b"not a wav at all")
    with pytest.raises(PackageError, match="not a PCM WAV file") as raised:
        SpriteEngine().prepare(make_package(tmp_path, audio=audio))
    assert raised.value.path == audio


def test_a_missing_audio_file_is_a_package_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PackageError) as raised:
        SpriteEngine().prepare(make_package(tmp_path, audio=tmp_path / "gone.wav"))
    assert raised.value.path == tmp_path / "gone.wav"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"mouth_center": [0.5]}, "mouth_center must be a list of 2 numbers"),
        ({"mouth_center": [0.5, 1.5]}, r"mouth_center must lie in \[0, 1\]"),
        ({"mouth_width": "wide"}, "mouth_width must be a number"),
        ({"mouth_width": 0.0}, "mouth_width must be a number"),
        ({"smile": 1.0}, "smile must be a number"),
        ({"lip_color": [255, 0]}, "lip_color must be an RGB list"),
        ({"teeth_color": [255, 255, 256]}, "teeth_color must be an RGB list"),
        ({"inner_color": "#000000"}, "inner_color must be an RGB list"),
    ],
)
def test_bad_sprite_options_are_a_package_error_on_the_manifest(
    options: dict[str, object], problem: str
) -> None:
    with pytest.raises(PackageError, match=problem) as raised:
        SpriteEngine().prepare(make_package(options=options))
    assert raised.value.path.name == "manifest.json"


def test_unknown_sprite_options_are_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    SpriteEngine().prepare(make_package(options={"mouth_widht": 0.3}))
    assert "ignoring unknown sprite option 'mouth_widht'" in caplog.text


def test_a_style_round_trips_through_its_manifest_options() -> None:
    style = SpriteStyle(mouth_center=(0.4, 0.7), mouth_width=0.3, smile=-0.05, lip_color=(200, 10, 20))
    assert SpriteStyle.from_options(style.options()) == style


def test_draw_mouth_draws_what_the_engine_draws() -> None:
    package = make_package(options=SpriteStyle(smile=0.05).options())
    x1, y1, x2, y2 = BOX
    region = package.frames.frame(0)[y1:y2, x1:x2].copy()
    draw_mouth(region, 0.7, 0.3, SpriteStyle(smile=0.05))
    assert np.array_equal(region, render(package, np.array([0.7, 0.3], dtype=np.float32)))


def test_features_from_audio_are_the_features_at_that_instant() -> None:
    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal(8000) * 4000).astype(np.int16)
    got = SpriteEngine().features_from_audio(make_package(), pcm, 16000, 3000)
    assert np.array_equal(got, features_at(pcm, 16000, 3000, 25.0))
