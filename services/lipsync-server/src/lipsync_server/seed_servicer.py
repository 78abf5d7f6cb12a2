"""`optimized_lipsyncsrv.OptimizedLipSyncService`: the seed server's API, so its clients work unchanged.

As the seed did, inference replies carry the face crop (JPEG quality 95) plus its bounds, and a frame
that fails is `success=false` with `error` set in an OK reply, which is what the seed's clients check;
the lookups (`GetStats`, `GetVideoFrame`, `GetModelMetadata`) of an unknown model or frame are gRPC
`NOT_FOUND`, as the seed's were, with the message in the reply's `error` too. The server's metrics
count each failure by its status all the same: a call with a failed reply under that code, a failed
frame of a batch or stream as an item error.

`GenerateBatchWithAudio` takes what the seed's clients sent: 1,280-byte chunks (40 ms of PCM16 mono at
16 kHz), 1,920-byte chunks (24 kHz, the seed's browser capture, resampled), and chunks of other sizes,
for which the frames fall back to the package's own audio (logged). A batch is as long as its reply
may be, up to `MAX_BATCH_FRAMES`: its frames are rendered a queue's worth at a time, and a reply that
would pass the message limit is refused with `RESOURCE_EXHAUSTED`, as is a longer batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc

from lipsync_protos import optimized_lipsyncsrv_pb2 as seed
from lipsync_protos import optimized_lipsyncsrv_pb2_grpc
from lipsync_server.core import MAX_SEND_BYTES, ServerCore, audio_input
from lipsync_server.errors import (
    FrameOutOfRangeError,
    InvalidArgumentError,
    LipsyncError,
    ModelNotFoundError,
)
from lipsync_server.metrics import Outcome
from lipsync_server.render import AudioInput, OutputMode, RenderedFrame, RenderRequest
from lipsync_server.status import status_for

# The request/response types vary per method; the stubs make the context generic over both.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
#: One frame's reply and the status of its failure (OK when it succeeded).
FrameReply: TypeAlias = "tuple[seed.OptimizedInferenceResponse, grpc.StatusCode]"

logger = logging.getLogger(__name__)

SEED_JPEG_QUALITY = 95
FULL_BODY = "full_body"
# The seed's audio batches: 40 ms chunks, 8 before and 7 after each frame.
CHUNK_MS = 40
CHUNKS_BEFORE, CHUNKS_AFTER = 8, 7
WINDOW_CHUNKS = CHUNKS_BEFORE + 1 + CHUNKS_AFTER
#: Chunk sizes whose format is known: 40 ms of PCM16 mono at 16 kHz and at 24 kHz.
CHUNK_RATES = {16_000 * CHUNK_MS // 1000 * 2: 16_000, 24_000 * CHUNK_MS // 1000 * 2: 24_000}
# Frame ids are int32 in every reply.
MAX_FRAME_ID = 2**31 - 1
#: The most frames one batch call renders (the seed had no cap; its scripts asked for 285). A reply of
#: this many rendered frames of 4 KB or more passes the message limit anyway; failed frames, a few
#: dozen bytes each, would not, and a call of 100,000 of them kept the server busy for seconds (found
#: by fuzzing).
MAX_BATCH_FRAMES = 16_384
#: Bytes a reply may hold besides its frames' images: a response's other fields, generously.
REPLY_OVERHEAD_BYTES = 256


def _prediction(
    name: str, frame_id: int, frame: RenderedFrame, engine: str
) -> seed.OptimizedInferenceResponse:
    t = frame.timings
    return seed.OptimizedInferenceResponse(
        success=True,
        prediction_data=frame.image,
        bounds=[float(v) for v in frame.bounds],
        processing_time_ms=round(t.total_ms),
        model_name=name,
        frame_id=frame_id,
        prediction_shape=f"{frame.height}x{frame.width}x3",
        prepare_time_ms=t.audio_features_ms,
        inference_time_ms=t.inference_ms,
        composite_time_ms=t.composite_ms,
        optimizations=[f"engine:{engine}", "worker-threads", "asyncio"],
    )


def _failure(name: str, frame_id: int, error: LipsyncError) -> seed.OptimizedInferenceResponse:
    return seed.OptimizedInferenceResponse(
        success=False, model_name=name, frame_id=frame_id, error=f"{status_for(error).name}: {error}"
    )


class VideoNotFoundError(InvalidArgumentError):
    """A `video_type` the server does not keep."""


def _lookup_status(error: LipsyncError) -> grpc.StatusCode:
    """The seed's status of a failed lookup: NOT_FOUND for an unknown model, frame or video."""
    if isinstance(error, ModelNotFoundError | FrameOutOfRangeError | VideoNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    return status_for(error)


def _chunk_audio(request: seed.BatchInferenceWithAudioRequest) -> Callable[[int], AudioInput | None]:
    """Frame i's audio in a `GenerateBatchWithAudio` request: its 16-chunk window when the chunks are
    of a known size, None (the package's own audio) when they are not. Raises InvalidArgumentError for
    a frame whose window the request does not hold."""
    chunks = request.audio_chunks
    sizes = sorted({len(chunk) for chunk in chunks})
    size = sizes[0] if len(sizes) == 1 else 0
    rate = CHUNK_RATES.get(size)
    if chunks and rate is None:
        logger.warning(
            "GenerateBatchWithAudio: audio chunks of %s bytes are neither 1,280 (40 ms at 16 kHz) nor "
            "1,920 (24 kHz); frames %d-%d of %r use the package's own audio",
            "/".join(str(n) for n in sizes[:4]),
            request.start_frame_id,
            request.start_frame_id + request.frame_count - 1,
            request.model_name,
        )
    audio = b"".join(chunks) if rate is not None else b""
    # The frame's instant is the middle of its own chunk, the ninth of its window.
    center = (CHUNKS_BEFORE * size + size // 2) // 2

    def frame_audio(i: int) -> AudioInput | None:
        if i + WINDOW_CHUNKS > len(chunks):
            raise InvalidArgumentError(
                f"frame {request.start_frame_id + i} needs audio chunks {i}-{i + WINDOW_CHUNKS - 1} "
                f"(8 before its own, 7 after, 40 ms each); {len(chunks)} were sent"
            )
        if rate is None:
            return None
        return audio_input(audio[i * size : (i + WINDOW_CHUNKS) * size], rate, center)

    return frame_audio


class SeedServicer(optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceServicer):
    def __init__(self, core: ServerCore) -> None:
        self._core = core

    async def _infer(self, name: str, frame_id: int, audio: AudioInput | None = None) -> FrameReply:
        """One frame's reply and its status (OK, or the code its failure would have had)."""
        try:
            request = RenderRequest(frame_id, OutputMode.FACE_CROP, SEED_JPEG_QUALITY, audio)
            (frame,) = await self._core.render(name, [request])
            engine = self._core.model(name).package.engine
            return _prediction(name, frame_id, frame, engine), grpc.StatusCode.OK
        except LipsyncError as error:
            return _failure(name, frame_id, error), status_for(error)

    def _item(self, method: str, reply: FrameReply) -> seed.OptimizedInferenceResponse:
        """A frame of a batch or stream: its failure counted as an item error."""
        response, code = reply
        if code is not grpc.StatusCode.OK:
            self._core.metrics.item_errors.labels(method, code.name).inc()
        return response

    @staticmethod
    def _batch(
        responses: Sequence[seed.OptimizedInferenceResponse], start: float
    ) -> seed.BatchInferenceResponse:
        total_ms = (time.perf_counter() - start) * 1000
        return seed.BatchInferenceResponse(
            responses=responses,
            total_processing_time_ms=round(total_ms),
            avg_frame_time_ms=total_ms / len(responses) if responses else 0.0,
        )

    async def _frames(
        self,
        method: str,
        count: int,
        infer: Callable[[int], Awaitable[FrameReply]],
        outcome: Outcome,
        context: Context,
    ) -> list[seed.OptimizedInferenceResponse]:
        """The replies of a batch's `count` frames (`infer(i)` renders frame i), a queue's worth at a
        time so that a batch of any length fits the server's queue. A reply that would pass the
        message limit is refused with RESOURCE_EXHAUSTED, as soon as its first frames show it would."""
        if count > MAX_BATCH_FRAMES:
            outcome.code = grpc.StatusCode.RESOURCE_EXHAUSTED
            await context.abort(
                outcome.code,
                f"{count:,} frames, more than the {MAX_BATCH_FRAMES:,} one call renders; "
                "ask for fewer frames per call",
            )
        step = self._core.settings.max_queue
        responses: list[seed.OptimizedInferenceResponse] = []
        size = REPLY_OVERHEAD_BYTES
        for first in range(0, count, step):
            done = await asyncio.gather(*(infer(i) for i in range(first, min(first + step, count))))
            for reply in done:
                responses.append(self._item(method, reply))
                size += reply[0].ByteSize() + REPLY_OVERHEAD_BYTES
            expected = size * count // len(responses)
            if expected > MAX_SEND_BYTES:
                outcome.code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(
                    outcome.code,
                    f"the reply to {count} frames would be about {expected:,} bytes, more than the "
                    f"{MAX_SEND_BYTES:,}-byte message limit; ask for fewer frames per call",
                )
        return responses

    async def GenerateInference(
        self, request: seed.OptimizedInferenceRequest, context: Context
    ) -> seed.OptimizedInferenceResponse:
        with self._core.metrics.track("seed.GenerateInference") as outcome:
            response, outcome.code = await self._infer(request.model_name, request.frame_id)
            return response

    async def GenerateBatchInference(
        self, request: seed.BatchInferenceRequest, context: Context
    ) -> seed.BatchInferenceResponse:
        method = "seed.GenerateBatchInference"
        with self._core.metrics.track(method) as outcome:
            start = time.perf_counter()
            ids = request.frame_ids
            responses = await self._frames(
                method, len(ids), lambda i: self._infer(request.model_name, ids[i]), outcome, context
            )
            return self._batch(responses, start)

    async def GenerateBatchWithAudio(
        self, request: seed.BatchInferenceWithAudioRequest, context: Context
    ) -> seed.BatchInferenceResponse:
        method = "seed.GenerateBatchWithAudio"
        with self._core.metrics.track(method) as outcome:
            start = time.perf_counter()
            count = request.frame_count
            problem = None
            if count < 1:
                problem = f"frame_count {count} must be at least 1"
            elif request.start_frame_id + count - 1 > MAX_FRAME_ID:
                # Found by fuzzing: the last frame's id overflowed the replies' int32 field.
                problem = f"frames from {request.start_frame_id} on run past the last frame id {MAX_FRAME_ID}"
            if problem is not None:
                outcome.code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(outcome.code, problem)
            frame_audio = _chunk_audio(request)
            name, first = request.model_name, request.start_frame_id

            async def infer(i: int) -> FrameReply:
                try:
                    audio = frame_audio(i)
                except InvalidArgumentError as error:
                    return _failure(name, first + i, error), grpc.StatusCode.INVALID_ARGUMENT
                return await self._infer(name, first + i, audio)

            responses = await self._frames(method, count, infer, outcome, context)
            return self._batch(responses, start)

    async def StreamInference(
        self,
        request_iterator: AsyncIterator[seed.OptimizedInferenceRequest],
        context: Context,
    ) -> AsyncIterator[seed.OptimizedInferenceResponse]:
        method = "seed.StreamInference"
        with self._core.metrics.track(method):
            async for request in request_iterator:
                yield self._item(method, await self._infer(request.model_name, request.frame_id))

    async def LoadPackage(
        self, request: seed.LoadPackageRequest, context: Context
    ) -> seed.LoadPackageResponse:
        with self._core.metrics.track("seed.LoadPackage") as outcome:
            start = time.perf_counter()
            try:
                entry = await self._core.load(request.package_dir, request.package_name)
                engine = self._core.model(entry.name).engine
            except LipsyncError as error:
                outcome.code = status_for(error)
                message = f"{outcome.code.name}: {error}"
                return seed.LoadPackageResponse(
                    success=False, package_name=request.package_name, message=message, error=message
                )
            package = entry.package
            assert package is not None  # a READY entry always has its package
            features = package.audio_features
            return seed.LoadPackageResponse(
                success=True,
                package_name=entry.name,
                message=f"loaded {entry.name}",
                initialization_time_ms=round((time.perf_counter() - start) * 1000),
                frame_count=package.frame_count,
                device=engine.device(package),
                videos_loaded=list(package.videos),
                audio_features_shape=list(features.shape) if features is not None else [],
                memory_mapped_audio=False,
            )

    async def GetStats(self, request: seed.StatsRequest, context: Context) -> seed.StatsResponse:
        with self._core.metrics.track("seed.GetStats") as outcome:
            try:
                model = self._core.model(request.model_name)
            except LipsyncError as error:
                outcome.code = _lookup_status(error)
                await context.abort(outcome.code, str(error))
            stats = self._core.stats.get(request.model_name)
            response = seed.StatsResponse(
                model_name=request.model_name,
                device=model.engine.device(model.package),
                frame_count=model.package.frame_count,
            )
            response.optimizations_active.extend([f"engine:{model.package.engine}", "worker-threads"])
            if stats is not None and stats.requests:
                response.total_requests = stats.requests
                response.avg_inference_time_ms = stats.total_ms / stats.requests
                response.min_inference_time_ms = stats.min_ms
                response.max_inference_time_ms = stats.max_ms
            return response

    async def ListModels(self, request: seed.ListModelsRequest, context: Context) -> seed.ListModelsResponse:
        with self._core.metrics.track("seed.ListModels"):
            names = self._core.registry.ready_names()
            return seed.ListModelsResponse(loaded_models=names, count=len(names))

    async def HealthCheck(self, request: seed.HealthRequest, context: Context) -> seed.HealthResponse:
        with self._core.metrics.track("seed.HealthCheck"):
            serving = self._core.serving
            return seed.HealthResponse(
                healthy=serving,
                status="SERVING" if serving else "NOT_SERVING",
                loaded_models=len(self._core.registry.ready_names()),
                uptime_seconds=int(self._core.uptime_s),
            )

    async def GetVideoFrame(
        self, request: seed.GetVideoFrameRequest, context: Context
    ) -> seed.GetVideoFrameResponse:
        with self._core.metrics.track("seed.GetVideoFrame") as outcome:
            video_type = request.video_type or FULL_BODY
            response = seed.GetVideoFrameResponse(frame_id=request.frame_id, video_type=video_type)
            try:
                if video_type != FULL_BODY:
                    raise VideoNotFoundError(
                        f"video_type {video_type!r} is not served; available: {FULL_BODY}"
                    )
                image, _width, _height = await self._core.base_frame(request.model_name, request.frame_id, 0)
            except LipsyncError as error:
                outcome.code = _lookup_status(error)
                return _failed_lookup(response, outcome.code, error, context)
            response.success = True
            response.frame_data = image
            return response

    async def GetModelMetadata(
        self, request: seed.GetModelMetadataRequest, context: Context
    ) -> seed.GetModelMetadataResponse:
        with self._core.metrics.track("seed.GetModelMetadata") as outcome:
            response = seed.GetModelMetadataResponse(model_name=request.model_name)
            try:
                package = self._core.model(request.model_name).package
            except LipsyncError as error:
                outcome.code = _lookup_status(error)
                return _failed_lookup(response, outcome.code, error, context)
            response.success = True
            response.frame_count = package.frame_count
            response.available_videos.extend(package.videos or (FULL_BODY,))
            # The package-relative name only: server paths are not the client's business.
            response.audio_path = package.audio_path.name if package.audio_path else ""
            response.bounds.extend(float(v) for v in package.boxes[0])
            return response


def _failed_lookup(
    response: LookupResponse, code: grpc.StatusCode, error: LipsyncError, context: Context
) -> LookupResponse:
    """A failed lookup as the seed answered it: the status and its details set on the call, and the
    reply's `success=false` with the message in `error` (which a client of the status never sees)."""
    message = f"{code.name}: {error}"
    context.set_code(code)
    context.set_details(str(error))
    response.success = False
    response.error = message
    return response


LookupResponse = TypeVar("LookupResponse", seed.GetVideoFrameResponse, seed.GetModelMetadataResponse)
