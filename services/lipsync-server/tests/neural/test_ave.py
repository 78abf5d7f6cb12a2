"""AVE features: rows, per-frame audio tensors, request windows and streams, and the encoder's vector."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ConvertedModels
from neural_doubles import PROJECTION_TOLERANCE, ProjectionEncoderDouble
from reference_weights import load_vector

from lipsync_server.ave import (
    AudioEncoder,
    AveStream,
    frame_audio,
    package_features,
    pad_rows,
    window_audio,
)
from lipsync_server.engines.unet328 import open_session
from lipsync_server.mel import mel_windows, melspectrogram

AVE = load_vector("ave")
MEL = load_vector("mel")


def speech_like(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16_000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (envelope * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(samples))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def encoder(converted_models: ConvertedModels) -> AudioEncoder:
    path = converted_models.audio_encoder
    return AudioEncoder(open_session(path, ["CPUExecutionProvider"]), path)


def test_rows_repeat_the_first_window_in_front_and_the_last_behind() -> None:
    windows = np.arange(3 * 512, dtype=np.float32).reshape(3, 512)
    rows = pad_rows(windows)
    assert rows.shape == (5, 512)
    assert [int(row[0]) for row in rows] == [0, 0, 512, 1024, 1024]


def test_a_frame_reads_sixteen_rows_around_it_zero_filled_outside() -> None:
    rows = np.arange(1, 21, dtype=np.float32)[:, None].repeat(512, axis=1)  # row r holds r + 1
    tensor = frame_audio(rows, 3)
    assert tensor.shape == (32, 16, 16)
    window = tensor.reshape(16, 512)
    assert window[:, 0].tolist() == [0, 0, 0, 0, 0, *range(1, 12)], "rows -5 … 10: five zero rows"
    assert (window[:5] == 0).all()
    end = frame_audio(rows, 19).reshape(16, 512)
    assert end[:, 0].tolist() == [*range(12, 21), 0, 0, 0, 0, 0, 0, 0]


def test_channels_two_r_and_two_r_plus_one_hold_the_halves_of_row_r() -> None:
    rows = np.random.default_rng(0).random((16, 512), dtype=np.float32)
    tensor = frame_audio(rows, 8)
    np.testing.assert_array_equal(tensor[6].ravel(), rows[3, :256])
    np.testing.assert_array_equal(tensor[7].ravel(), rows[3, 256:])


@pytest.mark.parametrize("samples", [100, 3000, 9_999, 32_000, 40_123])
def test_a_window_around_each_frame_of_an_utterance_gives_that_frame_of_the_whole_file(samples: int) -> None:
    encode = ProjectionEncoderDouble()
    wave = speech_like(samples)
    rows = package_features(encode, wave)
    for frame in range(math.ceil(samples / 640)):
        np.testing.assert_allclose(
            window_audio(encode, wave, 640 * frame),
            frame_audio(rows, frame),
            rtol=PROJECTION_TOLERANCE,
            atol=PROJECTION_TOLERANCE,
        )


def test_a_window_off_the_frame_grid_is_read_from_its_centre_sample() -> None:
    encode = ProjectionEncoderDouble()
    wave = speech_like(20_000)
    shifted = window_audio(encode, wave, 6_400 + 123)
    np.testing.assert_allclose(
        shifted,
        frame_audio(package_features(encode, wave[123:]), 10),
        rtol=PROJECTION_TOLERANCE,
        atol=PROJECTION_TOLERANCE,
    )


def test_a_request_window_encodes_only_the_windows_its_frame_hears() -> None:
    encode = ProjectionEncoderDouble()
    window_audio(encode, speech_like(32_000), 16_000)
    assert encode.calls == [16]


@pytest.mark.parametrize(("samples", "seed"), [(100, 1), (3_001, 2), (32_000, 3), (70_007, 4)])
def test_a_stream_in_random_pieces_gives_the_frames_of_the_whole_audio(samples: int, seed: int) -> None:
    encode = ProjectionEncoderDouble()
    wave = speech_like(samples, seed)
    rows = package_features(encode, wave)
    rng = np.random.default_rng(seed)
    stream, frames, position = AveStream(encode), [], 0
    while position < samples:
        size = int(rng.integers(1, 4000))
        frames += stream.push(wave[position : position + size])
        position += size
    frames += stream.finish()
    assert len(frames) == math.ceil(samples / 640), "one frame per 40 ms begun"
    for index, tensor in enumerate(frames):
        np.testing.assert_allclose(
            tensor, frame_audio(rows, index), rtol=PROJECTION_TOLERANCE, atol=PROJECTION_TOLERANCE
        )


def test_a_stream_trails_the_audio_by_the_half_second_a_frame_hears_ahead() -> None:
    stream = AveStream(ProjectionEncoderDouble())
    emitted = len(stream.push(speech_like(16_000)))
    # Frame i needs window i + 6, whose last sample is 452.5 ms after frame i: i <= (1000 - 452.5) / 40.
    assert emitted == 14
    assert len(stream.finish()) == 25 - 14


def test_a_stream_keeps_only_the_context_of_the_next_frame() -> None:
    stream = AveStream(ProjectionEncoderDouble())
    for _ in range(50):
        stream.push(speech_like(16_000))
    assert stream._windows.shape[0] <= 24
    assert stream._mel_rows.shape[0] <= 32


def test_the_converted_encoder_reproduces_the_reference_vector(encoder: AudioEncoder) -> None:
    np.testing.assert_allclose(encoder(AVE["x"][:, 0]), AVE["y"], rtol=0, atol=1e-4)


def test_the_whole_chain_from_the_waveform_reproduces_the_reference_audio_tensors(
    encoder: AudioEncoder,
) -> None:
    wave = MEL["wave"]
    windows = mel_windows(melspectrogram(wave))
    np.testing.assert_allclose(encoder(windows), AVE["win_feats"], rtol=0, atol=1e-4)
    rows = package_features(encoder, wave)
    np.testing.assert_allclose(rows, AVE["feats_padded"], rtol=0, atol=1e-4)
    frames = np.stack([frame_audio(rows, i) for i in range(49)])
    np.testing.assert_allclose(frames, AVE["audio_frames"], rtol=0, atol=1e-4)
    zero_rows = AVE["audio_frames"].reshape(49, 16, 512).sum(axis=2) == 0
    assert (frames.reshape(49, 16, 512)[zero_rows] == 0).all(), "rows outside the file are exactly zero"


def test_a_stream_of_the_reference_waveform_reproduces_the_reference_audio_tensors(
    encoder: AudioEncoder,
) -> None:
    stream = AveStream(encoder)
    frames = []
    for start in range(0, 32_000, 640):  # as a Speak session receives it: 40 ms per chunk
        frames += stream.push(MEL["wave"][start : start + 640])
    frames += stream.finish()
    assert len(frames) == 50
    np.testing.assert_allclose(np.stack(frames[:49]), AVE["audio_frames"], rtol=0, atol=1e-4)
