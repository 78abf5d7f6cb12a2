"""SyncTalk_2D's AVE audio features: the audio encoder, and the audio tensor the UNet reads per frame.

The chain after the mel spectrogram (`lipsync_server.mel`), as the SyncTalk_2D reference runs it:

1. Each video frame's 16-frame mel window, [80, 16], goes through the AVE audio encoder: 512 values.
   The reference makes `window_count(T)` windows of an audio file of T mel frames.
2. The first row is repeated once in front and the last once at the end: the `aud_ave.npy` rows.
   Row p is window clamp(p - 1, 0, windows - 1).
3. Output frame i reads rows [i - 8, i + 8) of them, zero rows outside, reshaped in C order to the UNet's
   audio tensor [32, 16, 16] (channels 2r and 2r + 1 are the two halves of row r).

So frame i hears the windows of frames i - 9 … i + 6: 0.84 s of audio, from 0.39 s before the frame's
instant to 0.45 s after it. Samples are 16 kHz mono floats (`mel.pcm16_to_float` of PCM16). Three ways there:

- `package_features`: the rows of a whole audio file (a package's audio), as `aud_ave.npy` holds them;
- `window_audio`: one frame's tensor from a request's audio window around the frame;
- `AveStream`: frame after frame from audio that arrives in pieces (a Speak session), each frame as
  soon as the audio it hears has arrived; the same tensors `package_features` + `frame_audio` give.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lipsync_server.mel import (
    MIN_SAMPLES,
    N_MELS,
    SAMPLE_RATE,
    VIDEO_FPS,
    WINDOW_FRAMES,
    MelStream,
    mel_windows,
    melspectrogram,
    window_count,
    window_starts,
)

FEATURES = 512
ROWS_BEFORE = 8
CONTEXT_ROWS = 16
AUDIO_SHAPE = (32, 16, 16)
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640: one video frame of audio
# Windows per encoder call: the reference's DataLoader batch.
ENCODER_BATCH = 64
# A frame reads encoder windows up to this many frames after its own (row i + 7 = window i + 6).
WINDOWS_AHEAD = CONTEXT_ROWS - ROWS_BEFORE - 2

# [N, 80, 16] float32 mel windows -> [N, 512] float32 features.
Encode = Callable[[NDArray[np.float32]], NDArray[np.float32]]


class AudioEncoder:
    """The AVE audio encoder run by an ONNX Runtime session.

    The session's input is [N, 1, 80, 16] and its output [N, 512]; their names are read from the
    model (the reference names them `mel_spectrogram` and `audio_features`).
    """

    def __init__(self, session: Any, path: Path) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{path.name}: an audio encoder has one input and one output, this model has "
                f"{len(inputs)} and {len(outputs)}"
            )
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1:] != [1, N_MELS, WINDOW_FRAMES]:
            raise ValueError(
                f"{path.name}: input {inputs[0].name!r} has shape {shape}; an AVE audio encoder reads "
                f"[batch, 1, {N_MELS}, {WINDOW_FRAMES}]"
            )
        self._session = session
        self._input = str(inputs[0].name)
        # A model exported with a fixed batch of 1 still works, one window at a time.
        self._batch = ENCODER_BATCH if not isinstance(shape[0], int) else shape[0]

    def __call__(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        """Features [N, 512] of mel windows [N, 80, 16]."""
        out = np.empty((windows.shape[0], FEATURES), dtype=np.float32)
        for start in range(0, windows.shape[0], self._batch):
            batch = windows[start : start + self._batch, None]
            (features,) = self._session.run(None, {self._input: np.ascontiguousarray(batch)})
            out[start : start + batch.shape[0]] = np.asarray(features, dtype=np.float32).reshape(-1, FEATURES)
        return out


def pad_rows(windows: NDArray[np.float32]) -> NDArray[np.float32]:
    """The `aud_ave.npy` rows of window features [n, 512]: the first repeated in front, the last behind."""
    return np.concatenate([windows[:1], windows, windows[-1:]]).astype(np.float32, copy=False)


def frame_audio(rows: NDArray[np.float32], frame: int) -> NDArray[np.float32]:
    """Frame `frame`'s audio tensor [32, 16, 16]: rows [frame - 8, frame + 8) of `rows`, zero outside."""
    window = np.zeros((CONTEXT_ROWS, rows.shape[1]), dtype=np.float32)
    first = frame - ROWS_BEFORE
    low, high = max(first, 0), min(first + CONTEXT_ROWS, rows.shape[0])
    if low < high:
        window[low - first : high - first] = rows[low:high]
    return window.reshape(AUDIO_SHAPE)


def _padded_to_minimum(wave: NDArray[np.float32]) -> NDArray[np.float32]:
    """`wave` followed by silence up to MIN_SAMPLES, the shortest audio the windows are defined for."""
    if wave.shape[0] >= MIN_SAMPLES:
        return wave
    return np.pad(wave, (0, MIN_SAMPLES - wave.shape[0]))


def package_features(encode: Encode, wave: NDArray[np.float32]) -> NDArray[np.float32]:
    """The padded feature rows [windows + 2, 512] of a whole audio file, as `aud_ave.npy` holds them."""
    mel = melspectrogram(_padded_to_minimum(wave))
    return pad_rows(encode(mel_windows(mel)))


def window_audio(encode: Encode, wave: NDArray[np.float32], center_sample: int) -> NDArray[np.float32]:
    """The audio tensor [32, 16, 16] of the frame whose instant is sample `center_sample` of `wave`.

    The window is read as an audio file whose frame grid puts a frame at `center_sample`: it starts
    `center_sample % 640` samples in, and the frame is its frame `center_sample // 640`. What the
    reference does at the ends of a file (repeated rows, then zero rows) it does at the window's ends,
    so a client that sends a whole utterance gets exactly the reference's frames.
    """
    frame = center_sample // SAMPLES_PER_FRAME
    mel = melspectrogram(_padded_to_minimum(wave[center_sample % SAMPLES_PER_FRAME :]))
    windows = window_count(mel.shape[0])
    rows = np.arange(frame - ROWS_BEFORE, frame - ROWS_BEFORE + CONTEXT_ROWS)
    present = (rows >= 0) & (rows < windows + 2)
    # Only the (at most 16) windows this frame hears are encoded.
    needed = np.clip(rows[present] - 1, 0, windows - 1)
    unique, where = np.unique(needed, return_inverse=True)
    features = encode(mel_windows(mel, unique.astype(np.int64)))
    window = np.zeros((CONTEXT_ROWS, FEATURES), dtype=np.float32)
    window[present] = features[where]
    return window.reshape(AUDIO_SHAPE)


class AveStream:
    """Audio tensors of successive frames 0, 1, 2, … of audio that arrives in pieces.

    `push` returns the tensors of the frames whose audio has all arrived (a frame hears 0.45 s past its
    instant, so they trail the audio by about 11 frames); `finish` those of every frame left, one frame
    per 640 samples begun. The tensors equal `frame_audio(package_features(audio), i)` of the whole
    audio to float rounding, frame for frame. Memory stays bounded by the context of one frame.
    """

    def __init__(self, encode: Encode) -> None:
        self._encode = encode
        self._mel = MelStream()
        # Mel frames from index _mel_origin on, and encoded windows from index _window_origin on.
        self._mel_rows: NDArray[np.float64] = np.empty((0, N_MELS), dtype=np.float64)
        self._mel_origin = 0
        self._windows: NDArray[np.float32] = np.empty((0, FEATURES), dtype=np.float32)
        self._window_origin = 0
        self._samples = 0
        self._frames = 0
        # The reference's window count, known once the audio has ended.
        self._total_windows: int | None = None

    @property
    def frames_emitted(self) -> int:
        return self._frames

    def push(self, wave: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """Add samples; returns the audio tensors of the frames that became complete."""
        if self._total_windows is not None:
            raise RuntimeError("audio pushed after finish()")
        self._samples += wave.shape[0]
        self._add_mel(self._mel.push(wave))
        known = self._mel_origin + self._mel_rows.shape[0]
        # While audio still arrives no window is shifted back: a window whose mel frames are all final
        # ends before the last mel frame of the audio, whatever its final length.
        ready = self._windows_ready(known)
        self._encode_windows(np.arange(self._window_end, ready, dtype=np.int64), None)
        # Keep the mel frames of the windows still to come: from the next one's start, or from the last
        # 16 frames, which a window shifted back at the end of the audio may read.
        keep = max(0, min(int(window_starts(np.array([self._window_end]))[0]), known - WINDOW_FRAMES))
        if keep > self._mel_origin:
            self._mel_rows = self._mel_rows[keep - self._mel_origin :]
            self._mel_origin = keep
        return self._emit(self._window_end - WINDOWS_AHEAD)

    def finish(self) -> list[NDArray[np.float32]]:
        """No more audio: the tensors of the remaining frames, up to one per 640 samples begun."""
        if self._total_windows is not None:
            return []
        self._add_mel(self._mel.finish())
        mel_frames = self._mel.frames_emitted
        self._total_windows = window_count(mel_frames)
        indices = np.arange(self._window_end, self._total_windows, dtype=np.int64)
        self._encode_windows(indices, mel_frames)
        return self._emit(math.ceil(self._samples / SAMPLES_PER_FRAME))

    @property
    def _window_end(self) -> int:
        return self._window_origin + int(self._windows.shape[0])

    def _windows_ready(self, mel_frames_known: int) -> int:
        """One past the last window whose 16 mel frames are all among the first `mel_frames_known`."""
        end = self._window_end
        while int(window_starts(np.array([end]))[0]) + WINDOW_FRAMES <= mel_frames_known:
            end += 1
        return end

    def _add_mel(self, frames: NDArray[np.float64]) -> None:
        if frames.shape[0]:
            self._mel_rows = np.concatenate([self._mel_rows, frames])

    def _encode_windows(self, indices: NDArray[np.int64], mel_frames: int | None) -> None:
        if not indices.shape[0]:
            return
        starts = window_starts(indices, mel_frames) - self._mel_origin
        mel = self._mel_rows[starts[:, None] + np.arange(WINDOW_FRAMES)]
        features = self._encode(np.ascontiguousarray(mel.transpose(0, 2, 1), dtype=np.float32))
        self._windows = np.concatenate([self._windows, features])

    def _row(self, p: int) -> NDArray[np.float32] | None:
        """Padded feature row p, None for a zero row."""
        total = self._total_windows
        if p < 0 or (total is not None and p >= total + 2):
            return None
        window = 0 if p == 0 else p - 1 if total is None else min(p - 1, total - 1)
        row: NDArray[np.float32] = self._windows[window - self._window_origin]
        return row

    def _emit(self, end: int) -> list[NDArray[np.float32]]:
        tensors = []
        for frame in range(self._frames, end):
            window = np.zeros((CONTEXT_ROWS, FEATURES), dtype=np.float32)
            for offset in range(CONTEXT_ROWS):
                row = self._row(frame - ROWS_BEFORE + offset)
                if row is not None:
                    window[offset] = row
            tensors.append(window.reshape(AUDIO_SHAPE))
            self._frames = frame + 1
        # Frame f reads windows from f - 9 on (row f - 8), and window 0 while row 0 is in its context.
        keep = max(0, self._frames - ROWS_BEFORE - 1)
        if keep > self._window_origin:
            self._windows = self._windows[keep - self._window_origin :]
            self._window_origin = keep
        return tensors
