"""`optimized_lipsyncsrv.OptimizedLipSyncService`: the seed server's API, so its clients work unchanged.

As the seed did, inference replies carry the face crop (JPEG quality 95) plus its bounds, and failures
are `success=false` with `error` set rather than gRPC errors — that is what the seed's clients check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from lipsync_protos import optimized_lipsyncsrv_pb2 as seed
from lipsync_protos import optimized_lipsyncsrv_pb2_grpc
from lipsync_server.core import SAMPLE_RATE, ServerCore, audio_input
from lipsync_server.errors import InvalidArgumentError, LipsyncError
from lipsync_server.render import AudioInput, OutputMode, RenderedFrame, RenderRequest
from lipsync_server.status import status_for

# The request/response types vary per method; the stubs make the context generic over both.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

SEED_JPEG_QUALITY = 95
FULL_BODY = "full_body"
# The seed's audio batches: 40 ms chunks, 8 before and 7 after each frame.
CHUNK_MS = 40
CHUNKS_BEFORE, CHUNKS_AFTER = 8, 7
# Frame ids are int32 in every reply.
MAX_FRAME_ID = 2**31 - 1


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


class SeedServicer(optimized_lipsyncsrv_pb2_grpc.OptimizedLipSyncServiceServicer):
    def __init__(self, core: ServerCore) -> None:
        self._core = core

    async def _infer(
        self, name: str, frame_id: int, audio: AudioInput | None = None
    ) -> seed.OptimizedInferenceResponse:
        try:
            request = RenderRequest(frame_id, OutputMode.FACE_CROP, SEED_JPEG_QUALITY, audio)
            (frame,) = await self._core.render(name, [request])
            return _prediction(name, frame_id, frame, self._core.model(name).package.engine)
        except LipsyncError as error:
            return _failure(name, frame_id, error)

    @staticmethod
    def _batch(responses: list[seed.OptimizedInferenceResponse], start: float) -> seed.BatchInferenceResponse:
        total_ms = (time.perf_counter() - start) * 1000
        return seed.BatchInferenceResponse(
            responses=responses,
            total_processing_time_ms=round(total_ms),
            avg_frame_time_ms=total_ms / len(responses) if responses else 0.0,
        )

    async def GenerateInference(
        self, request: seed.OptimizedInferenceRequest, context: Context
    ) -> seed.OptimizedInferenceResponse:
        with self._core.metrics.track("seed.GenerateInference"):
            return await self._infer(request.model_name, request.frame_id)

    async def GenerateBatchInference(
        self, request: seed.BatchInferenceRequest, context: Context
    ) -> seed.BatchInferenceResponse:
        with self._core.metrics.track("seed.GenerateBatchInference") as outcome:
            try:
                self._core.check_batch(len(request.frame_ids), "GenerateBatchInference")
            except LipsyncError as error:
                outcome.code = status_for(error)
                await context.abort(outcome.code, str(error))
            start = time.perf_counter()
            responses = await asyncio.gather(*(self._infer(request.model_name, f) for f in request.frame_ids))
            return self._batch(list(responses), start)

    async def GenerateBatchWithAudio(
        self, request: seed.BatchInferenceWithAudioRequest, context: Context
    ) -> seed.BatchInferenceResponse:
        with self._core.metrics.track("seed.GenerateBatchWithAudio") as outcome:
            start = time.perf_counter()
            chunk_bytes = SAMPLE_RATE * CHUNK_MS // 1000 * 2
            needed = request.frame_count + CHUNKS_BEFORE + CHUNKS_AFTER
            problem = None
            if request.frame_count < 1:
                problem = f"frame_count {request.frame_count} must be at least 1"
            elif request.frame_count > self._core.settings.max_queue:
                problem = (
                    f"frame_count {request.frame_count} is more than the {self._core.settings.max_queue} "
                    "frames (--max-queue) one call may ask for"
                )
            elif request.start_frame_id + request.frame_count - 1 > MAX_FRAME_ID:
                # Found by fuzzing: the last frame's id overflowed the replies' int32 field.
                problem = f"frames from {request.start_frame_id} on run past the last frame id {MAX_FRAME_ID}"
            elif len(request.audio_chunks) != needed:
                problem = (
                    f"{len(request.audio_chunks)} audio chunks sent; frame_count {request.frame_count} needs "
                    f"{needed} (8 before the first frame, 7 after the last), 40 ms of PCM16 16 kHz each"
                )
            elif any(len(chunk) != chunk_bytes for chunk in request.audio_chunks):
                problem = f"every audio chunk must be {chunk_bytes} bytes (40 ms of PCM16 mono 16 kHz)"
            if problem is not None:
                outcome.code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(outcome.code, problem)
            audio = b"".join(request.audio_chunks)
            window = (CHUNKS_BEFORE + 1 + CHUNKS_AFTER) * chunk_bytes
            responses = []
            for i in range(request.frame_count):
                pcm = audio[i * chunk_bytes : i * chunk_bytes + window]
                # The frame's instant is the middle of its own chunk, the ninth of its window.
                center = (CHUNKS_BEFORE * chunk_bytes + chunk_bytes // 2) // 2
                frame_audio = audio_input(pcm, SAMPLE_RATE, center)
                responses.append(self._infer(request.model_name, request.start_frame_id + i, frame_audio))
            return self._batch(list(await asyncio.gather(*responses)), start)

    async def StreamInference(
        self,
        request_iterator: AsyncIterator[seed.OptimizedInferenceRequest],
        context: Context,
    ) -> AsyncIterator[seed.OptimizedInferenceResponse]:
        with self._core.metrics.track("seed.StreamInference"):
            async for request in request_iterator:
                yield await self._infer(request.model_name, request.frame_id)

    async def LoadPackage(
        self, request: seed.LoadPackageRequest, context: Context
    ) -> seed.LoadPackageResponse:
        with self._core.metrics.track("seed.LoadPackage"):
            start = time.perf_counter()
            try:
                entry = await self._core.load(request.package_dir, request.package_name)
            except LipsyncError as error:
                message = f"{status_for(error).name}: {error}"
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
                device="cpu",
                videos_loaded=list(package.videos),
                audio_features_shape=list(features.shape) if features is not None else [],
                memory_mapped_audio=False,
            )

    async def GetStats(self, request: seed.StatsRequest, context: Context) -> seed.StatsResponse:
        with self._core.metrics.track("seed.GetStats"):
            stats = self._core.stats.get(request.model_name)
            response = seed.StatsResponse(model_name=request.model_name, device="cpu")
            try:
                model = self._core.model(request.model_name)
            except LipsyncError:
                return response
            response.frame_count = model.package.frame_count
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
        with self._core.metrics.track("seed.GetVideoFrame"):
            video_type = request.video_type or FULL_BODY
            response = seed.GetVideoFrameResponse(frame_id=request.frame_id, video_type=video_type)
            try:
                if video_type != FULL_BODY:
                    raise InvalidArgumentError(
                        f"video_type {video_type!r} is not served; available: {FULL_BODY}"
                    )
                image, _width, _height = await self._core.base_frame(request.model_name, request.frame_id, 0)
            except LipsyncError as error:
                response.success = False
                response.error = f"{status_for(error).name}: {error}"
                return response
            response.success = True
            response.frame_data = image
            return response

    async def GetModelMetadata(
        self, request: seed.GetModelMetadataRequest, context: Context
    ) -> seed.GetModelMetadataResponse:
        with self._core.metrics.track("seed.GetModelMetadata"):
            response = seed.GetModelMetadataResponse(model_name=request.model_name)
            try:
                package = self._core.model(request.model_name).package
            except LipsyncError as error:
                response.success = False
                response.error = f"{status_for(error).name}: {error}"
                return response
            response.success = True
            response.frame_count = package.frame_count
            response.available_videos.extend(package.videos or (FULL_BODY,))
            # The package-relative name only: server paths are not the client's business.
            response.audio_path = package.audio_path.name if package.audio_path else ""
            response.bounds.extend(float(v) for v in package.boxes[0])
            return response
