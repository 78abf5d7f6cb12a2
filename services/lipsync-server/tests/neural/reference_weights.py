"""The SyncTalk_2D reference vectors, and the deterministic "formula" weights they were computed with.

The vectors in `vectors/` come from running the original SyncTalk_2D classes on weights that a formula
gives for every state_dict entry, taken in the order of the key lists `*-state-dict.tsv`:

    r_j = (7919·j² + 104729·j + 15485863·k + 1) mod 1000003       (k: entry index, j: flat C-order index)
    v_j = 2·r_j / 1000003 − 1

then scaled by the entry's role (conv weights by gain / sqrt(fan_in), BatchNorm values around their
neutral values), computed in float64 and rounded once to float32. They are not a trained model: they pin
down the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

VECTORS = Path(__file__).parent / "vectors"
UNET_LAYOUT = VECTORS / "unet328-state-dict.tsv"
ENCODER_LAYOUT = VECTORS / "audio-encoder-state-dict.tsv"
UNET_GAIN = 2.4
ENCODER_GAIN = 2.0
_MODULUS = 1_000_003


@dataclass(frozen=True)
class Entry:
    """One state_dict entry of a key list."""

    index: int
    key: str
    shape: tuple[int, ...]
    dtype: str
    role: str


def read_layout(path: Path) -> list[Entry]:
    """The entries of a `*-state-dict.tsv` key list, in state_dict order."""
    lines = path.read_text().splitlines()
    entries = []
    for line in lines[1:]:
        index, key, shape, dtype, _numel, role = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        entries.append(Entry(int(index), key, dims, dtype, role))
    return entries


def formula_values(index: int, count: int) -> NDArray[np.float64]:
    """v_j for j = 0 … count-1 of entry `index`, in float64."""
    j = np.arange(count, dtype=np.int64)
    r = (7919 * j * j + 104729 * j + 15485863 * index + 1) % _MODULUS
    return 2.0 * r / _MODULUS - 1.0


def formula_tensor(entry: Entry, gain: float) -> NDArray[np.float32] | NDArray[np.int64]:
    """The formula value of one entry, in its state_dict shape."""
    if entry.role == "bn_num_batches_tracked":
        return np.zeros((), dtype=np.int64)
    v = formula_values(entry.index, int(np.prod(entry.shape))).reshape(entry.shape)
    if entry.role == "conv_weight":
        fan_in = entry.shape[1] * entry.shape[2] * entry.shape[3]
        value = v * gain / np.sqrt(fan_in)
    elif entry.role in ("conv_bias", "bn_bias", "bn_running_mean"):
        value = 0.1 * v
    elif entry.role == "bn_weight":
        value = 1.0 + 0.2 * v
    elif entry.role == "bn_running_var":
        value = 1.0 + 0.5 * np.abs(v)
    else:
        raise ValueError(f"unknown role {entry.role!r} of {entry.key}")
    return value.astype(np.float32)


def formula_state_dict(layout: Path, gain: float) -> dict[str, NDArray[np.float32] | NDArray[np.int64]]:
    """Every entry of the key list `layout` with its formula value, in order."""
    return {entry.key: formula_tensor(entry, gain) for entry in read_layout(layout)}


def load_vector(name: str) -> dict[str, NDArray[Any]]:
    """The arrays of `vectors/<name>-vector.npz` ("unet", "ave" or "mel")."""
    with np.load(VECTORS / f"{name}-vector.npz") as data:
        return {key: data[key] for key in data.files}
