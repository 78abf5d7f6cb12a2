"""The numpy mel pipeline against the SyncTalk_2D reference vector `mel-vector.npz`."""

from __future__ import annotations

import numpy as np
import pytest
from reference_weights import load_vector

from lipsync_server.mel import (
    MIN_SAMPLES,
    MelStream,
    mel_basis,
    mel_frame_count,
    mel_windows,
    melspectrogram,
    pcm16_to_float,
    window_count,
    window_starts,
)

VECTOR = load_vector("mel")


def test_the_filterbank_is_the_reference_matrix() -> None:
    basis = mel_basis()
    assert basis.shape == (80, 401)
    assert basis.dtype == np.float32
    np.testing.assert_allclose(basis, VECTOR["mel_basis"], rtol=0, atol=2e-9)


def test_with_the_reference_filterbank_the_mel_matches_to_float64_rounding() -> None:
    mel = melspectrogram(VECTOR["wave"], VECTOR["mel_basis"])
    assert mel.shape == (161, 80)
    assert mel.dtype == np.float64
    np.testing.assert_allclose(mel, VECTOR["mel"], rtol=0, atol=1e-9)


def test_with_its_own_filterbank_the_mel_matches_the_reference() -> None:
    np.testing.assert_allclose(melspectrogram(VECTOR["wave"]), VECTOR["mel"], rtol=0, atol=1e-6)


def test_silence_is_clipped_to_minus_four() -> None:
    mel = melspectrogram(np.zeros(4000, np.float32))
    assert mel.shape == (mel_frame_count(4000), 80) == (21, 80)
    assert (mel == -4.0).all()


def test_window_count_and_starts_follow_the_reference_including_the_shift_back_at_the_end() -> None:
    frames = VECTOR["mel"].shape[0]
    assert window_count(frames) == int(VECTOR["data_len"]) == 47
    starts = window_starts(np.arange(50), frames)
    assert starts.tolist() == VECTOR["window_start"].tolist()
    assert starts[-5:].tolist() == [144, 145, 145, 145, 145]


def test_windows_are_transposed_to_mel_by_time() -> None:
    windows = mel_windows(melspectrogram(VECTOR["wave"]), np.arange(50))
    assert windows.shape == (50, 80, 16)
    assert windows.dtype == np.float32
    np.testing.assert_allclose(windows, VECTOR["windows"], rtol=0, atol=1e-4)
    assert mel_windows(VECTOR["mel"]).shape == (47, 80, 16), "by default, the reference's window count"


def test_fewer_mel_frames_than_one_window_are_refused() -> None:
    with pytest.raises(ValueError, match="fewer than one window"):
        window_count(15)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stream_in_random_pieces_gives_the_mel_of_the_whole_audio(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wave = VECTOR["wave"]
    stream = MelStream()
    pieces, position = [], 0
    while position < wave.shape[0]:
        size = int(rng.integers(1, 2500))
        pieces.append(stream.push(wave[position : position + size]))
        position += size
    streamed = np.concatenate([*pieces, stream.finish()])
    assert streamed.shape == (161, 80)
    np.testing.assert_allclose(streamed, melspectrogram(wave), rtol=0, atol=1e-12)


def test_a_stream_returns_frames_as_soon_as_no_later_sample_changes_them() -> None:
    stream = MelStream()
    assert stream.push(np.ones(399, np.float32)).shape == (0, 80)
    assert stream.push(np.ones(1, np.float32)).shape == (1, 80), "frame 0 covers samples [-400, 400)"
    assert stream.push(np.ones(199, np.float32)).shape == (0, 80)
    assert stream.push(np.ones(1, np.float32)).shape == (1, 80)


def test_a_short_stream_is_finished_as_if_followed_by_silence() -> None:
    stream = MelStream()
    stream.push(np.full(100, 0.5, np.float32))
    padded = np.zeros(MIN_SAMPLES, np.float32)
    padded[:100] = 0.5
    np.testing.assert_allclose(stream.finish(), melspectrogram(padded), rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="after finish"):
        stream.push(np.zeros(10, np.float32))


def test_pcm16_maps_to_floats_as_the_reference_loader_does() -> None:
    floats = pcm16_to_float(np.array([32767, -32768, 0, 16384], np.int16))
    assert floats.dtype == np.float32
    assert floats.tolist() == [32767 / 32768, -1.0, 0.0, 0.5]
