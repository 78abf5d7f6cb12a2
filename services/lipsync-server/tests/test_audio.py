"""WAV files, PCM bytes and the sprite engine's per-frame mouth features."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from lipsync_server.audio import (
    NEUTRAL_ROUNDNESS,
    features_at,
    frame_features,
    pcm16_from_bytes,
    read_wav,
    resample,
    write_wav,
)
from lipsync_server.errors import InvalidArgumentError

RATE = 16000
FPS = 25.0


def tone(frequencies: list[float], dbfs: float, seconds: float = 0.5) -> NDArray[np.int16]:
    """Equal-amplitude sines at `frequencies`, scaled to an RMS level of `dbfs`."""
    t = np.arange(round(seconds * RATE)) / RATE
    signal = sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(frequencies))
    assert isinstance(signal, np.ndarray)
    signal *= 10 ** (dbfs / 20) * 32768 / np.sqrt(np.mean(signal**2))
    return np.rint(signal).astype(np.int16)


def middle(pcm: NDArray[np.int16]) -> NDArray[np.float32]:
    return features_at(pcm, RATE, pcm.shape[0] // 2, FPS)


def test_silence_has_a_closed_mouth_and_neutral_roundness() -> None:
    openness, roundness = middle(np.zeros(RATE, dtype=np.int16))
    assert openness == 0.0
    assert roundness == NEUTRAL_ROUNDNESS


def test_a_loud_vowel_opens_the_mouth_wide() -> None:
    vowel = tone([125.0 * k for k in range(1, 20)], dbfs=-14.0)
    assert middle(vowel)[0] > 0.9


def test_openness_grows_with_the_level() -> None:
    levels = [middle(tone([220.0, 440.0], dbfs))[0] for dbfs in (-50.0, -40.0, -30.0, -20.0, -10.0)]
    assert levels[0] == 0.0
    assert levels == sorted(levels)
    assert levels[-1] == 1.0
    assert 0.2 < levels[2] < 0.8


def test_low_spectral_content_is_rounder_than_high() -> None:
    oo = middle(tone([250.0, 500.0, 750.0], dbfs=-15.0))
    ee = middle(tone([2200.0, 2800.0, 3200.0], dbfs=-15.0))
    assert oo[1] > 0.8
    assert ee[1] < 0.2


def test_frame_features_have_one_row_per_frame_within_the_unit_range() -> None:
    pcm = tone([180.0, 2400.0], dbfs=-18.0, seconds=1.0)
    features = frame_features(pcm, RATE, FPS, 40)
    assert features.shape == (40, 2)
    assert features.dtype == np.float32
    assert ((features >= 0.0) & (features <= 1.0)).all()


def test_frames_past_the_end_of_the_audio_read_as_silence() -> None:
    features = frame_features(tone([300.0], dbfs=-15.0, seconds=1.0), RATE, FPS, 40)
    assert (features[1:24, 0] > 0.9).all()  # frame 0 sits on the first sample: half its window is before it
    assert (features[27:] == [0.0, NEUTRAL_ROUNDNESS]).all()


def test_frame_features_agree_with_features_at_the_frame_instants() -> None:
    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal(RATE) * 3000 * np.sin(np.linspace(0, 9, RATE)) ** 2).astype(np.int16)
    features = frame_features(pcm, RATE, FPS, 25)
    for index in (0, 1, 12, 24):
        assert features_at(pcm, RATE, round(index * RATE / FPS), FPS) == pytest.approx(features[index])


def test_features_far_outside_the_audio_read_as_silence() -> None:
    pcm = tone([300.0], dbfs=-10.0)
    for center in (-(10**9), 10**9):
        assert list(features_at(pcm, RATE, center, FPS)) == [0.0, NEUTRAL_ROUNDNESS]


def test_a_non_positive_rate_or_fps_is_refused() -> None:
    pcm = np.zeros(100, dtype=np.int16)
    with pytest.raises(InvalidArgumentError):
        features_at(pcm, 0, 50, FPS)
    with pytest.raises(InvalidArgumentError):
        frame_features(pcm, RATE, 0.0, 3)


@settings(max_examples=60, deadline=None)
@given(
    pcm=hnp.arrays(np.int16, st.integers(0, 3000)),
    center=st.integers(-5000, 8000),
)
def test_features_of_any_audio_are_finite_and_within_the_unit_range(
    pcm: NDArray[np.int16], center: int
) -> None:
    features = features_at(pcm, RATE, center, FPS)
    assert features.shape == (2,)
    assert np.isfinite(features).all()
    assert ((features >= 0.0) & (features <= 1.0)).all()


def test_pcm16_bytes_are_little_endian_samples() -> None:
    assert list(pcm16_from_bytes(b"\x01\x00\xff\xff\x00\x80")) == [1, -1, -32768]


def test_an_odd_number_of_pcm16_bytes_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="even number of bytes"):
        pcm16_from_bytes(b"\x01\x00\x02")


def test_a_wav_file_reads_back_what_was_written(tmp_path: Path) -> None:
    pcm = tone([440.0], dbfs=-6.0, seconds=0.1)
    write_wav(tmp_path / "a.wav", pcm, 22050)
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050
    assert np.array_equal(samples, pcm)


def _wav(path: Path, channels: int, width: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(RATE)
        wav.writeframes(bytes(channels * width * 100))
    return path


def test_a_stereo_wav_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="2 channels; expected mono"):
        read_wav(_wav(tmp_path / "stereo.wav", channels=2, width=2))


def test_an_8_bit_wav_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="8-bit; expected 16-bit PCM"):
        read_wav(_wav(tmp_path / "byte.wav", channels=1, width=1))


def test_a_file_that_is_not_a_wav_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(b"ID3\x03 certainly not RIFF")
    with pytest.raises(InvalidArgumentError, match="not a PCM WAV file"):
        read_wav(path)


def test_writing_anything_but_mono_int16_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1-D int16"):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2), dtype=np.int16), RATE)
    with pytest.raises(ValueError, match="1-D int16"):
        write_wav(tmp_path / "x.wav", np.zeros(10, dtype=np.float32), RATE)


def test_24_khz_audio_is_resampled_to_16_khz_keeping_what_16_khz_can_carry() -> None:
    seconds = np.arange(24_000) / 24_000
    tone = np.rint(10_000 * np.sin(2 * np.pi * 1_000 * seconds)).astype(np.int16)
    high = np.rint(10_000 * np.sin(2 * np.pi * 10_000 * seconds)).astype(np.int16)

    kept = resample(tone, 24_000, 16_000)
    dropped = resample(high, 24_000, 16_000)

    expected = 10_000 * np.sin(2 * np.pi * 1_000 * np.arange(16_000) / 16_000)
    inner = slice(400, -400)  # away from the filter's edges
    assert kept.shape == (16_000,)
    assert np.abs(kept[inner] - expected[inner]).max() <= 30  # of 10,000: within 0.3 %
    assert np.sqrt(np.mean(dropped[inner].astype(np.float64) ** 2)) <= 10  # 10 kHz folds into nothing


def test_resampling_to_the_same_rate_is_the_audio_itself() -> None:
    pcm = np.arange(10, dtype=np.int16)
    assert resample(pcm, 16_000, 16_000) is pcm
