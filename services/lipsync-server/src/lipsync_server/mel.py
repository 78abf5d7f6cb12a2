"""The mel spectrogram of SyncTalk_2D's "ave" audio path, in numpy, and its 16-frame windows per video frame.

The pipeline, as the SyncTalk_2D reference computes it (every constant below is the reference's):

1. 16 kHz mono samples as floats (PCM16 / 32768), pre-emphasis y[n] = x[n] - 0.97·x[n-1].
2. STFT of 800 points, hop 200, periodic Hann window, centred: 400 zeros on each side, so frame t covers
   samples [200t - 400, 200t + 400) and N samples give T = 1 + N // 200 frames (80 frames/s).
3. Magnitude, projected on 80 Slaney mel filters from 55 to 7600 Hz (`mel_basis`).
4. 20·log10(max(1e-5, mel)) - 20 dB, mapped from [-100, 0] dB to [-4, 4] and clipped.

The result is time-major, [T, 80] float64. Video frame i (25 fps) reads the 16 mel frames starting at
int(80·i/25) (`window_starts`); a window that would run past the end is shifted back to end at T.

`MelStream` computes the same frames from audio that arrives in pieces, each frame as soon as no later
sample can change it; they equal the frames `melspectrogram` gives for the whole audio to float64
rounding (~1e-15).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN_HZ = 55.0
FMAX_HZ = 7600.0
PRE_EMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE // HOP  # 80
VIDEO_FPS = 25
WINDOW_FRAMES = 16
# Audio shorter than this has fewer than WINDOW_FRAMES mel frames, which the reference cannot window; it
# is read as if followed by silence up to this length.
MIN_SAMPLES = (WINDOW_FRAMES - 1) * HOP
PCM16_SCALE = 32768.0

_PAD = N_FFT // 2
_MIN_LEVEL = float(np.exp(MIN_LEVEL_DB / 20.0 * np.log(10.0)))
# Frames per FFT call when a long signal is transformed, bounding the temporary [frames, 800] arrays.
_CHUNK_FRAMES = 2048


def pcm16_to_float(pcm: NDArray[np.int16]) -> NDArray[np.float32]:
    """PCM16 samples as floats in [-1, 1), as the reference's audio loader reads them (x / 32768)."""
    return (pcm.astype(np.float32) / np.float32(PCM16_SCALE)).astype(np.float32)


@functools.cache
def mel_basis() -> NDArray[np.float32]:
    """The [80, 401] float32 Slaney-scale, area-normalised mel filterbank (librosa's defaults).

    Built as librosa builds it: each filter's triangle is stored in float32 and then scaled in place by
    its float64 area normalisation, so the rounding matches the reference's matrix.
    """
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN_HZ), _hz_to_mel(FMAX_HZ), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    basis = np.zeros((N_MELS, bins.shape[0]), dtype=np.float32)
    for m in range(N_MELS):
        rising = -ramps[m] / widths[m]
        falling = ramps[m + 2] / widths[m + 1]
        basis[m] = np.maximum(0.0, np.minimum(rising, falling))
    basis *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    basis.flags.writeable = False
    return basis


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return float(_MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOG_STEP)
    return hz / _F_SP


def _mel_to_hz(mels: NDArray[np.float64]) -> NDArray[np.float64]:
    hz = _F_SP * mels
    log_part = mels >= _MIN_LOG_MEL
    hz[log_part] = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mels[log_part] - _MIN_LOG_MEL))
    return hz


@functools.cache
def _hann() -> NDArray[np.float64]:
    """The periodic Hann window of N_FFT points."""
    window = np.hanning(N_FFT + 1)[:-1]
    window.flags.writeable = False
    return window


def preemphasis(wave: NDArray[np.floating], previous: float = 0.0) -> NDArray[np.float64]:
    """y[n] = x[n] - 0.97·x[n-1] in float64, with x[-1] = `previous` (0 for the start of a signal)."""
    x = wave.astype(np.float64, copy=False)
    y = np.empty_like(x)
    if x.shape[0]:
        y[0] = x[0] - PRE_EMPHASIS * previous
        np.subtract(x[1:], PRE_EMPHASIS * x[:-1], out=y[1:])
    return y


def mel_frame_count(samples: int) -> int:
    """T, the number of mel frames of `samples` samples (centred STFT)."""
    return 1 + samples // HOP


def _mel_of_frames(frames: NDArray[np.float64], basis: NDArray[np.float32]) -> NDArray[np.float64]:
    """Normalised mel rows [k, 80] of k pre-emphasised 800-sample frames [k, 800]."""
    magnitude = np.abs(np.fft.rfft(frames * _hann(), axis=1))
    mel = magnitude @ basis.T.astype(np.float64)
    db = 20.0 * np.log10(np.maximum(_MIN_LEVEL, mel)) - REF_LEVEL_DB
    scaled = (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    result: NDArray[np.float64] = np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return result


def _mel_of_padded(
    padded: NDArray[np.float64], first: int, count: int, basis: NDArray[np.float32]
) -> NDArray[np.float64]:
    """Mel rows of frames first … first+count-1 of a pre-emphasised signal already centre-padded, where
    frame t starts at padded[HOP·t]."""
    out = np.empty((count, N_MELS), dtype=np.float64)
    views = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    for start in range(0, count, _CHUNK_FRAMES):
        stop = min(count, start + _CHUNK_FRAMES)
        out[start:stop] = _mel_of_frames(views[first + start : first + stop], basis)
    return out


def melspectrogram(
    wave: NDArray[np.floating], basis: NDArray[np.float32] | None = None
) -> NDArray[np.float64]:
    """The normalised mel spectrogram of float samples `wave` (16 kHz mono), time-major [T, 80] float64.

    `basis` replaces the built filterbank (the tests pass the reference's own matrix).
    """
    if wave.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {wave.shape}")
    padded = np.pad(preemphasis(wave), _PAD)
    return _mel_of_padded(padded, 0, mel_frame_count(wave.shape[0]), mel_basis() if basis is None else basis)


def window_count(mel_frames: int) -> int:
    """How many 16-frame windows (video frames) the reference makes of T mel frames:
    int((T - 16) / 80 · 25) + 2, for T >= 16."""
    if mel_frames < WINDOW_FRAMES:
        raise ValueError(f"{mel_frames} mel frames are fewer than one window of {WINDOW_FRAMES}")
    return int((mel_frames - WINDOW_FRAMES) / MEL_FPS * VIDEO_FPS) + 2


def window_starts(indices: NDArray[np.int64], mel_frames: int | None = None) -> NDArray[np.int64]:
    """First mel frame of the windows of video frames `indices`: int(80·(i/25)), shifted back to
    T - 16 where the window would run past `mel_frames` T (None: no end known, no shift)."""
    starts = (MEL_FPS * (indices.astype(np.float64) / VIDEO_FPS)).astype(np.int64)
    if mel_frames is not None:
        starts = np.minimum(starts, mel_frames - WINDOW_FRAMES)
    return starts


def mel_windows(mel: NDArray[np.float64], indices: NDArray[np.int64] | None = None) -> NDArray[np.float32]:
    """The windows of video frames `indices` (default: all `window_count` of them) of time-major `mel`,
    each transposed to [80 mel bins, 16 frames] as the AVE encoder reads it: [len, 80, 16] float32."""
    frames = mel.shape[0]
    if indices is None:
        indices = np.arange(window_count(frames), dtype=np.int64)
    starts = window_starts(indices, frames)
    windows = mel[starts[:, None] + np.arange(WINDOW_FRAMES)]
    return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)


class MelStream:
    """Mel frames of audio that arrives in pieces.

    `push` returns the frames that no later sample can change; `finish` the rest, as if the audio ended
    there (the centred STFT's zero padding, and at least MIN_SAMPLES samples). Together they give
    `melspectrogram` of the whole audio, to float64 rounding. Memory stays bounded: only the samples
    that frames still to come overlap are kept.
    """

    def __init__(self) -> None:
        # Pre-emphasised samples from absolute sample index `_origin` on; the 400 leading zeros of the
        # centred STFT are part of it, so frame t starts at buffer index HOP·t - _origin - _PAD.
        self._buffer: NDArray[np.float64] = np.zeros(_PAD, dtype=np.float64)
        self._origin = -_PAD
        self._previous = 0.0
        self._samples = 0
        self._next = 0
        self._finished = False

    @property
    def samples(self) -> int:
        """Samples received so far."""
        return self._samples

    @property
    def frames_emitted(self) -> int:
        """Mel frames returned so far."""
        return self._next

    def push(self, wave: NDArray[np.floating]) -> NDArray[np.float64]:
        """Add float samples; returns the mel frames [k, 80] that became final."""
        if self._finished:
            raise RuntimeError("audio pushed after finish()")
        if wave.shape[0]:
            emphasised = preemphasis(wave, self._previous)
            self._previous = float(wave[-1])
            self._buffer = np.concatenate([self._buffer, emphasised])
            self._samples += wave.shape[0]
        # Frame t is final once sample HOP·t + _PAD - 1 has arrived.
        last_final = (self._samples - _PAD) // HOP
        return self._emit(last_final + 1)

    def finish(self) -> NDArray[np.float64]:
        """No more audio: the remaining mel frames, up to T = 1 + N // 200 (N at least MIN_SAMPLES)."""
        if self._finished:
            return np.empty((0, N_MELS), dtype=np.float64)
        silence = self.push(np.zeros(max(0, MIN_SAMPLES - self._samples)))
        self._finished = True
        total = mel_frame_count(self._samples)
        needed = HOP * (total - 1) + _PAD - self._origin
        self._buffer = np.pad(self._buffer, (0, max(0, needed - self._buffer.shape[0])))
        return np.concatenate([silence, self._emit(total)])

    def _emit(self, end: int) -> NDArray[np.float64]:
        count = end - self._next
        if count <= 0:
            return np.empty((0, N_MELS), dtype=np.float64)
        first = HOP * self._next - _PAD - self._origin
        frames = _mel_of_padded(self._buffer[first:], 0, count, mel_basis())
        self._next = end
        # Keep only what the next frame onwards overlaps.
        drop = HOP * self._next - _PAD - self._origin
        self._buffer = self._buffer[drop:]
        self._origin += drop
        return frames
