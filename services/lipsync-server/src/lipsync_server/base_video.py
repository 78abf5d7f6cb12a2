"""A model's base video, encoded once per codec, for browsers that composite the face crops themselves.

The file is every base frame of the package in order, in the codec of the session's crops, with a key
frame every `KEY_INTERVAL_S` so a player can start anywhere after at most that much decoding, under a
bitrate cap of `MAX_BITRATE` at 720p. Its container is the project's own, as simple as WebCodecs needs
(docs/protocol.md, "Base video"): a header, then per frame its size, a key-frame flag and the encoded
bytes. It is encoded on first use, kept in memory and written under the cache directory, keyed by what
the package's frames are, so a restart reuses it and a changed package gets a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

from lipsync_server.packages.model import ModelPackage
from lipsync_server.video import CODECS, VideoCodec, VideoEncoder

logger = logging.getLogger(__name__)

MAGIC = b"LSBV"
FORMAT_VERSION = 1
#: magic, format version, codec, codec string length, reserved (0), width, height, fps, frame count.
HEADER = struct.Struct("<4sBBBBHHfI")
#: Before each frame: its size in bytes and its flags (bit 0: key frame).
FRAME = struct.Struct("<IB")
FLAG_KEY_FRAME = 0x01
KEY_INTERVAL_S = 1.0
#: The cap at 1280×720 (the target is 1.5 Mbit/s); larger frames get proportionally more.
MAX_BITRATE = 1_300_000
# Encoder settings that change the file: part of its cache key.
_SETTINGS_VERSION = "2"

T = TypeVar("T")


class Runner(Protocol):
    """Runs a blocking call in a worker thread (InferenceRunner.call)."""

    def __call__(self, function: Callable[..., T], *args: object) -> Awaitable[T]: ...


def encode_base_video(package: ModelPackage, codec: VideoCodec) -> bytes:
    """Every base frame of `package` as one file (blocking: run it in a worker thread)."""
    spec = CODECS[codec]
    width, height = package.width - package.width % 2, package.height - package.height % 2
    rate = round(MAX_BITRATE * (width * height) / (1280 * 720))
    encoder = VideoEncoder(
        codec, width, height, package.fps, key_frame_interval_s=KEY_INTERVAL_S, max_bitrate=rate, threads=0
    )
    text = spec.codec_string.encode("ascii")
    parts = [
        HEADER.pack(
            MAGIC, FORMAT_VERSION, codec, len(text), 0, width, height, package.fps, package.frame_count
        )
    ]
    parts.append(text)
    for index in range(package.frame_count):
        chunk = encoder.encode(package.frames.frame(index)[:height, :width], index * 1000 / package.fps)
        parts.append(FRAME.pack(len(chunk.data), FLAG_KEY_FRAME if chunk.key_frame else 0))
        parts.append(chunk.data)
    return b"".join(parts)


def cache_key(package: ModelPackage, codec: VideoCodec) -> str:
    """What the file depends on: the package's frames (a sample of them, and their count and size), the
    codec and the encoder settings."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{_SETTINGS_VERSION}:{codec.name}:{package.fps}:{package.frame_count}".encode())
    step = max(1, package.frame_count // 16)
    for index in range(0, package.frame_count, step):
        digest.update(package.frames.frame(index).tobytes())
    return digest.hexdigest()


class BaseVideos:
    """Each model's base video per codec: encoded once, then served from memory (and from disk after a
    restart). Concurrent first requests share one encoding."""

    def __init__(self, cache_dir: Path) -> None:
        self._dir = cache_dir / "base-video"
        self._files: dict[str, bytes] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Each loaded package's key per codec, so that a request costs no hashing after the first; the
        # package is kept with it because an id may be reused once a package is gone.
        self._keys: dict[tuple[int, VideoCodec], tuple[ModelPackage, str]] = {}

    async def get(self, package: ModelPackage, codec: VideoCodec, run: Runner) -> tuple[bytes, str]:
        """The file and its ETag (the cache key); `run` runs a blocking call in a worker thread."""
        known = self._keys.get((id(package), codec))
        if known is not None and known[0] is package:
            key = known[1]
        else:
            key = await run(cache_key, package, codec)
            self._keys[(id(package), codec)] = (package, key)
        found = self._files.get(key)
        if found is not None:
            return found, key
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._files.get(key)
            if found is None:
                found = await run(self._load_or_encode, package, codec, key)
                self._files[key] = found
        return found, key

    def _load_or_encode(self, package: ModelPackage, codec: VideoCodec, key: str) -> bytes:
        path = self._dir / f"{key}.lsbv"
        try:
            return path.read_bytes()
        except OSError:
            pass
        data = encode_base_video(package, codec)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            staging = path.with_suffix(".tmp")
            staging.write_bytes(data)
            staging.replace(path)
        except OSError as exc:
            # A read-only cache costs an encoding per start, nothing else.
            logger.warning("cannot keep the base video of %s in %s: %s", package.name, self._dir, exc)
        return data
