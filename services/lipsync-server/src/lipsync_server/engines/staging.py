"""Where a UNet batch's inputs are assembled and its output lands: plain numpy arrays handed to
`session.run` (`HostStaging`, the CPU), or page-locked host buffers bound to the session with ONNX
Runtime's I/O binding (`BoundStaging`, CUDA).

From pageable memory every copy to or from the GPU goes through a staging copy of the driver's (what
that costs per batch size: docs/performance.md). From page-locked ("pinned") memory the GPU copies
directly. So on CUDA each batch bucket (a power of two, as ShapeStableSession pads
batches) has page-locked buffers for the image input, the audio input and the output, reused from
batch to batch: the engine writes each frame's input straight into them and reads the prediction from
them, and the model call binds them (`bind_ortvalue_input` / `bind_ortvalue_output`), so ONNX Runtime
copies between them and the GPU without another host copy.

The buffers are allocated through `Allocate`, so that the binding is tested on the CPU with ordinary
host buffers (`host_buffer("cpu")`) and runs on CUDA with `host_buffer("cuda_pinned")`.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

IMAGE_SHAPE = (6, 320, 320)
AUDIO_SHAPE = (32, 16, 16)
OUTPUT_SHAPE = (3, 320, 320)
# A host buffer: the ONNX Runtime OrtValue that owns the memory, and a numpy view of it.
Allocate = Callable[[tuple[int, ...]], tuple[Any, NDArray[np.float32]]]


def host_buffer(memory: str) -> Allocate:
    """Float32 host buffers from ONNX Runtime's allocator of `memory` ("cuda_pinned": page-locked)."""

    def allocate(shape: tuple[int, ...]) -> tuple[Any, NDArray[np.float32]]:
        import onnxruntime

        value = onnxruntime.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, memory, 0)
        pointer = ctypes.cast(value.data_ptr(), ctypes.POINTER(ctypes.c_float))
        return value, np.ctypeslib.as_array(pointer, shape=shape)

    return allocate


class StagedBatch(Protocol):
    """A batch's inputs, written by the engine frame by frame, and the model call on them."""

    images: NDArray[np.float32]
    audio: NDArray[np.float32]

    def run(self) -> NDArray[np.float32]:
        """The predictions [N, 3, 320, 320] of the batch; valid until the batch is released."""
        ...


class Staging(Protocol):
    def batch(self, size: int) -> Any:
        """A context manager giving a StagedBatch of `size` frames, released on exit."""
        ...


@dataclass
class _HostBatch:
    images: NDArray[np.float32]
    audio: NDArray[np.float32]
    call: Callable[[NDArray[np.float32], NDArray[np.float32]], NDArray[np.float32]]

    def run(self) -> NDArray[np.float32]:
        return self.call(self.images, self.audio)


class HostStaging:
    """Fresh numpy inputs per batch, run through `run(images, audio)` (UnetModel's plain call)."""

    def __init__(
        self, run: Callable[[NDArray[np.float32], NDArray[np.float32]], NDArray[np.float32]]
    ) -> None:
        self._run = run

    @contextmanager
    def batch(self, size: int) -> Iterator[_HostBatch]:
        images = np.empty((size, *IMAGE_SHAPE), np.float32)
        audio = np.empty((size, *AUDIO_SHAPE), np.float32)
        yield _HostBatch(images, audio, self._run)


@dataclass(eq=False)
class _Buffers:
    """The bound buffers of one bucket: OrtValues and their numpy views."""

    values: tuple[Any, Any, Any]
    images: NDArray[np.float32]
    audio: NDArray[np.float32]
    output: NDArray[np.float32]


@dataclass
class _BoundBatch:
    images: NDArray[np.float32]
    audio: NDArray[np.float32]
    _buffers: _Buffers
    _session: Any
    _names: tuple[str, str, str]

    def run(self) -> NDArray[np.float32]:
        size, buffers = self.images.shape[0], self._buffers
        # Rows beyond the batch are the bucket's padding: frames are independent, but stale values of an
        # earlier batch could hold anything, so they are zeroed as ShapeStableSession pads.
        buffers.images[size:] = 0.0
        buffers.audio[size:] = 0.0
        image_name, audio_name, output_name = self._names
        images_value, audio_value, output_value = buffers.values
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(image_name, images_value)
        binding.bind_ortvalue_input(audio_name, audio_value)
        binding.bind_ortvalue_output(output_name, output_value)
        self._session.run_with_iobinding(binding)
        return buffers.output[:size]


class BoundStaging:
    """Host buffers per batch bucket from `allocate`, reused, bound to the session of the bucket
    (`session_for(bucket)`, ShapeStableSession's) with ONNX Runtime I/O binding."""

    def __init__(
        self,
        session_for: Callable[[int], Any],
        bucket: Callable[[int], int],
        names: tuple[str, str, str],
        allocate: Allocate,
    ) -> None:
        self._session_for = session_for
        self._bucket = bucket
        self._names = names
        self._allocate = allocate
        self._lock = threading.Lock()
        # Free buffers by bucket: as many sets as batches of that bucket ever ran at once.
        self._free: dict[int, list[_Buffers]] = {}

    @contextmanager
    def batch(self, size: int) -> Iterator[_BoundBatch]:
        bucket = self._bucket(size)
        buffers = self._take(bucket)
        try:
            yield _BoundBatch(
                buffers.images[:size], buffers.audio[:size], buffers, self._session_for(bucket), self._names
            )
        finally:
            with self._lock:
                self._free[bucket].append(buffers)

    def _take(self, bucket: int) -> _Buffers:
        with self._lock:
            free = self._free.setdefault(bucket, [])
            if free:
                return free.pop()
        images = self._allocate((bucket, *IMAGE_SHAPE))
        audio = self._allocate((bucket, *AUDIO_SHAPE))
        output = self._allocate((bucket, *OUTPUT_SHAPE))
        return _Buffers((images[0], audio[0], output[0]), images[1], audio[1], output[1])


# What the engine binds on CUDA.
PAGE_LOCKED: Allocate = host_buffer("cuda_pinned")
