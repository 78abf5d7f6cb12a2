"""PCM16 mono audio: WAV files, request bytes, and the sprite engine's per-frame mouth features.

The sprite features of a video frame are `[openness, roundness]`, both float32 in [0, 1]:

- openness comes from the level of the audio in a Hann window of one frame period centred on the
  frame's instant: RMS in dBFS mapped linearly from `SILENT_DBFS` (0) to `OPEN_DBFS` (1). The mapping is
  absolute, with no per-file normalisation, so live audio and a package's own audio drive the mouth alike.
- roundness comes from the spectral centroid of the same window after pre-emphasis applied twice: a
  low centroid ("oo", "oh") is round, a high one ("ee", "s") is wide. Mapped on a log-frequency scale
  from `WIDE_CENTROID_HZ` (0) to `ROUND_CENTROID_HZ` (1). Below `SILENT_DBFS` the centroid means
  nothing, so roundness is the neutral `NEUTRAL_ROUNDNESS`.

Frame i's instant is its presentation time, sample `round(i * sample_rate / fps)`; `frame_features` and
`features_at` give the same values for the same instant.
"""

from __future__ import annotations

import functools
import math
import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import InvalidArgumentError

#: The rate engines hear: requests' audio at another supported rate is resampled to it.
SAMPLE_RATE = 16_000
#: Rates a request's audio may have: 16 kHz, and 24 kHz (what the seed's browser page captured).
REQUEST_SAMPLE_RATES = (16_000, 24_000)
SILENT_DBFS = -45.0
OPEN_DBFS = -12.0
ROUND_CENTROID_HZ = 850.0
WIDE_CENTROID_HZ = 2000.0
NEUTRAL_ROUNDNESS = 0.5
PRE_EMPHASIS = 0.97
FULL_SCALE = 32768.0
_CHUNK_FRAMES = 1024
_HISTORY = 2  # samples before each window that the pre-emphasis reads
# Zero crossings of the resampling filter on each side: ~0.5 dB of ripple, > 70 dB of stop band.
_RESAMPLE_ZEROS = 16
_MAX_RESAMPLE_FACTOR = 1000


def read_wav(path: Path) -> tuple[NDArray[np.int16], int]:
    """The samples and sample rate of a PCM16 mono WAV file.

    Raises InvalidArgumentError, whose message is the problem without the path, when the file is not
    a WAV file or not 16-bit PCM mono; OSError when it cannot be read at all.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidArgumentError(f"not a PCM WAV file ({exc})") from exc
    if width != 2:
        raise InvalidArgumentError(f"samples are {8 * width}-bit; expected 16-bit PCM")
    if channels != 1:
        raise InvalidArgumentError(f"{channels} channels; expected mono")
    if rate <= 0:
        raise InvalidArgumentError(f"sample rate {rate} Hz is not positive")
    return pcm16_from_bytes(data), rate


def write_wav(path: Path, pcm: NDArray[np.int16], sample_rate: int) -> None:
    """Write `pcm` (1-D int16) as a PCM16 mono WAV file."""
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise ValueError(f"expected 1-D int16 samples, got {pcm.dtype} of shape {pcm.shape}")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.astype("<i2", copy=False).tobytes())


def pcm16_from_bytes(data: bytes) -> NDArray[np.int16]:
    """Little-endian PCM16 bytes as a read-only int16 array; an odd byte count is refused."""
    if len(data) % 2:
        raise InvalidArgumentError(f"PCM16 audio needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def resample(pcm: NDArray[np.int16], from_rate: int, to_rate: int) -> NDArray[np.int16]:
    """`pcm` at `to_rate`: polyphase (up by `to/g`, a windowed-sinc low-pass below the lower Nyquist
    frequency, down by `from/g`), so that nothing above the new Nyquist frequency folds back. Output
    sample k is input time `k * from_rate / to_rate`."""
    if from_rate == to_rate:
        return pcm
    step = math.gcd(from_rate, to_rate)
    up, down = to_rate // step, from_rate // step
    if up * down > _MAX_RESAMPLE_FACTOR:
        raise InvalidArgumentError(f"cannot resample {from_rate} Hz audio to {to_rate} Hz")
    taps = _resample_filter(up, down)
    stuffed = np.zeros(pcm.shape[0] * up, dtype=np.float64)
    stuffed[::up] = pcm
    # The filter is centred: output sample k of the stuffed signal lines up with input sample k/up.
    filtered = np.convolve(stuffed, taps)[taps.shape[0] // 2 :][: stuffed.shape[0]]
    out: NDArray[np.int16] = np.clip(np.rint(filtered[::down]), -32768, 32767).astype(np.int16)
    return out


@functools.cache
def _resample_filter(up: int, down: int) -> NDArray[np.float64]:
    half = _RESAMPLE_ZEROS * max(up, down)
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = 1.0 / max(up, down)  # of the stuffed signal's Nyquist frequency
    taps: NDArray[np.float64] = cutoff * np.sinc(cutoff * n) * np.kaiser(n.shape[0], 8.0) * up
    return taps


def frame_features(
    pcm: NDArray[np.int16], sample_rate: int, fps: float, frame_count: int
) -> NDArray[np.float32]:
    """Sprite features `[openness, roundness]` of frames 0 … frame_count-1, float32 [frame_count, 2].

    Frames whose window lies past the end of the audio read as silence.
    """
    length = _window_length(sample_rate, fps)
    centers = np.rint(np.arange(frame_count) * (sample_rate / fps)).astype(np.int64)
    features = np.empty((frame_count, 2), dtype=np.float32)
    # In chunks, so that an hour of audio never needs its whole window matrix at once.
    for first in range(0, frame_count, _CHUNK_FRAMES):
        chunk = centers[first : first + _CHUNK_FRAMES]
        features[first : first + chunk.shape[0]] = _features(_windows(pcm, chunk, length), sample_rate)
    return features


def features_at(
    pcm: NDArray[np.int16], sample_rate: int, center_sample: int, fps: float
) -> NDArray[np.float32]:
    """Sprite features `[openness, roundness]` of the frame whose instant is sample `center_sample`."""
    centers = np.array([center_sample], dtype=np.int64)
    features: NDArray[np.float32] = _features(
        _windows(pcm, centers, _window_length(sample_rate, fps)), sample_rate
    )[0]
    return features


def _window_length(sample_rate: int, fps: float) -> int:
    if sample_rate <= 0 or fps <= 0:
        raise InvalidArgumentError(f"sample rate {sample_rate} and fps {fps} must be positive")
    return max(16, round(sample_rate / fps))


def _windows(pcm: NDArray[np.int16], centers: NDArray[np.int64], length: int) -> NDArray[np.float64]:
    """Windows of `length` samples centred on `centers`, each after the `_HISTORY` samples before it
    (for the pre-emphasis), zero outside the audio: float64 [len(centers), _HISTORY + length]."""
    if pcm.ndim != 1:
        raise InvalidArgumentError(f"audio must be mono (1-D), got shape {pcm.shape}")
    span = _HISTORY + length
    starts = centers - length // 2 - _HISTORY
    first, last = int(starts.min()), int(starts.max()) + span
    # Only the stretch of audio the windows cover is copied (zero where it lies outside the audio), so
    # one frame of live audio costs the same whatever the length of the audio around it.
    stretch = np.zeros(last - first, dtype=np.float64)
    inside = slice(max(first, 0), max(min(last, pcm.shape[0]), first, 0))
    stretch[inside.start - first : inside.stop - first] = pcm[inside]
    windows: NDArray[np.float64] = stretch[(starts - first)[:, None] + np.arange(span)]
    return windows


def _features(windows: NDArray[np.float64], sample_rate: int) -> NDArray[np.float32]:
    length = windows.shape[1] - _HISTORY
    taper, frequencies = _spectrum_constants(length, sample_rate)
    samples = windows[:, _HISTORY:] / FULL_SCALE
    power = (samples**2) @ taper / taper.sum()
    dbfs = 10.0 * np.log10(np.maximum(power, 1e-12))
    openness = np.clip((dbfs - SILENT_DBFS) / (OPEN_DBFS - SILENT_DBFS), 0.0, 1.0)

    # A voice's spectrum falls by ~6 dB per octave, so its plain centroid sits near F1 whatever the
    # vowel; pre-emphasising twice lifts F2/F3, which is what tells "ee" from "oo".
    once = windows[:, 1:] - PRE_EMPHASIS * windows[:, :-1]
    twice = (once[:, 1:] - PRE_EMPHASIS * once[:, :-1]) * taper
    magnitude = np.abs(np.fft.rfft(twice, n=_fft_length(length), axis=1))
    centroid = magnitude @ frequencies / np.maximum(magnitude.sum(axis=1), 1e-12)
    span = np.log(WIDE_CENTROID_HZ / ROUND_CENTROID_HZ)
    roundness = np.clip(np.log(WIDE_CENTROID_HZ / np.maximum(centroid, 1.0)) / span, 0.0, 1.0)
    roundness = np.where(openness > 0.0, roundness, NEUTRAL_ROUNDNESS)
    return np.stack([openness, roundness], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _spectrum_constants(length: int, sample_rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The Hann taper of a window and the frequencies of its FFT bins (cached: one pair per rate)."""
    taper = np.hanning(length + 2)[1:-1]
    frequencies = np.fft.rfftfreq(_fft_length(length), d=1.0 / sample_rate).astype(np.float64)
    taper.flags.writeable = False
    frequencies.flags.writeable = False
    return taper, frequencies


def _fft_length(length: int) -> int:
    return 1 << (length - 1).bit_length()
