"""`lipsync.v1.LipSync`: translates protobuf messages to ServerCore calls and errors to status codes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc
from lipsync_server.base_video import BaseVideos
from lipsync_server.convert import error_response, infer_response, model_info, output_mode
from lipsync_server.core import ServerCore, audio_input
from lipsync_server.errors import InvalidArgumentError, LipsyncError
from lipsync_server.render import RenderRequest
from lipsync_server.speak import SpeakSession
from lipsync_server.status import status_for
from lipsync_server.video_stream import server_codecs

# The request/response types vary per method; the stubs make the context generic over both.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

logger = logging.getLogger(__name__)

# Requests of one StreamInfer call worked on at once; responses still leave in request order.
STREAM_WINDOW = 8
# GetBaseVideo sends its file in pieces of this size (gRPC's default message limit is 4 MiB).
BASE_VIDEO_PIECE = 1 << 20


class LipSyncServicer(lipsync_pb2_grpc.LipSyncServicer):
    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self._base_videos = BaseVideos(core.settings.cache_dir)

    @asynccontextmanager
    async def _rpc(self, method: str, context: Context) -> AsyncIterator[None]:
        """Count the call and turn a LipsyncError into its status code with the error's message."""
        with self._core.metrics.track(method) as outcome:
            try:
                yield
            except LipsyncError as error:
                outcome.code = status_for(error)
                await context.abort(outcome.code, str(error))

    def render_request(self, request: pb.InferRequest) -> RenderRequest:
        audio = None
        if request.HasField("audio"):
            window = request.audio
            center = window.center_sample if window.HasField("center_sample") else None
            audio = audio_input(window.pcm16, window.sample_rate, center)
        return RenderRequest(
            frame_id=request.frame_id,
            output_mode=output_mode(request.output_mode),
            jpeg_quality=self._core.quality(request.jpeg_quality),
            audio=audio,
        )

    async def _render_one(self, request: pb.InferRequest) -> pb.InferResponse:
        start = time.perf_counter()
        render_request = self.render_request(request)
        (frame,) = await self._core.render(request.model_name, [render_request])
        response = infer_response(request, render_request.output_mode, frame)
        response.timings.queue_ms = max(0.0, (time.perf_counter() - start) * 1000 - frame.timings.total_ms)
        return response

    async def _infer_item(self, method: str, request: pb.InferRequest) -> pb.InferResponse:
        """One frame of a batch or stream: a failure becomes the response's Error (and is counted)."""
        try:
            return await self._render_one(request)
        except LipsyncError as error:
            self._core.metrics.item_errors.labels(method, status_for(error).name).inc()
            return error_response(request, error)

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        async with self._rpc("ListModels", context):
            return pb.ListModelsResponse(models=[model_info(e) for e in self._core.registry.entries()])

    async def GetModelMetadata(self, request: pb.GetModelMetadataRequest, context: Context) -> pb.ModelInfo:
        async with self._rpc("GetModelMetadata", context):
            return model_info(self._core.registry.entry(request.model_name))

    async def GetVideoFrame(
        self, request: pb.GetVideoFrameRequest, context: Context
    ) -> pb.GetVideoFrameResponse:
        async with self._rpc("GetVideoFrame", context):
            image, width, height = await self._core.base_frame(
                request.model_name, request.frame_id, request.jpeg_quality
            )
            return pb.GetVideoFrameResponse(
                model_name=request.model_name,
                frame_id=request.frame_id,
                image=image,
                width=width,
                height=height,
            )

    async def GetModelAudio(
        self, request: pb.GetModelAudioRequest, context: Context
    ) -> pb.GetModelAudioResponse:
        async with self._rpc("GetModelAudio", context):
            wav, rate, duration = await self._core.audio(request.model_name)
            return pb.GetModelAudioResponse(
                model_name=request.model_name, wav=wav, sample_rate=rate, duration_s=duration
            )

    async def prepare_base_videos(self) -> None:
        """Encode each ready model's base video in the preferred codec, one after the other (run in the
        background once the models are loaded)."""
        codecs = server_codecs()
        for name in self._core.registry.ready_names() if codecs else []:
            try:
                await self._base_videos.get(self._core.model(name).package, codecs[0], self._core.runner.call)
            except (LipsyncError, OSError, RuntimeError, ValueError) as error:
                logger.warning("the base video of %s could not be made ahead: %s", name, error)

    async def GetBaseVideo(
        self, request: pb.GetBaseVideoRequest, context: Context
    ) -> AsyncIterator[pb.GetBaseVideoResponse]:
        async with self._rpc("GetBaseVideo", context):
            package = self._core.model(request.model_name).package
            codec = next((c for c in server_codecs() if int(c) == int(request.codec)), None)
            if codec is None:
                names = ", ".join(f"{c.name} ({int(c)})" for c in server_codecs())
                raise InvalidArgumentError(f"codec {request.codec} is not one this server encodes: {names}")
            data, etag = await self._base_videos.get(package, codec, self._core.runner.call)
            if request.if_none_match == etag:
                yield pb.GetBaseVideoResponse(etag=etag, size=len(data), not_modified=True)
                return
            view = memoryview(data)
            for offset in range(0, len(data), BASE_VIDEO_PIECE):
                piece = bytes(view[offset : offset + BASE_VIDEO_PIECE])
                if offset == 0:
                    yield pb.GetBaseVideoResponse(data=piece, etag=etag, size=len(data))
                else:
                    yield pb.GetBaseVideoResponse(data=piece)

    async def Infer(self, request: pb.InferRequest, context: Context) -> pb.InferResponse:
        async with self._rpc("Infer", context):
            return await self._render_one(request)

    async def InferBatch(self, request: pb.InferBatchRequest, context: Context) -> pb.InferBatchResponse:
        async with self._rpc("InferBatch", context):
            self._core.check_batch(len(request.requests), "InferBatch")
            start = time.perf_counter()
            responses = await asyncio.gather(
                *(self._infer_item("InferBatch", item) for item in request.requests)
            )
            return pb.InferBatchResponse(responses=responses, total_ms=(time.perf_counter() - start) * 1000)

    async def StreamInfer(
        self, request_iterator: AsyncIterator[pb.InferRequest], context: Context
    ) -> AsyncIterator[pb.InferResponse]:
        async with self._rpc("StreamInfer", context):
            pending: asyncio.Queue[asyncio.Task[pb.InferResponse] | None] = asyncio.Queue(STREAM_WINDOW)

            async def read() -> None:
                try:
                    async for item in request_iterator:
                        await pending.put(asyncio.create_task(self._infer_item("StreamInfer", item)))
                finally:
                    await pending.put(None)

            reader = asyncio.create_task(read())
            try:
                while (task := await pending.get()) is not None:
                    yield await task
                await reader  # surfaces a read error instead of ending the stream as if complete
            finally:
                reader.cancel()
                while not pending.empty():
                    leftover = pending.get_nowait()
                    if leftover is not None:
                        leftover.cancel()

    async def Speak(
        self, request_iterator: AsyncIterator[pb.SpeakRequest], context: Context
    ) -> AsyncIterator[pb.SpeakResponse]:
        async with self._rpc("Speak", context):
            first = await anext(request_iterator, None)
            if first is None:
                return
            if first.WhichOneof("kind") != "start":
                raise InvalidArgumentError("the first message of Speak must be SpeakStart")
            session = SpeakSession.start(self._core, first.start, self.render_request)
            async for response in session.run(request_iterator):
                yield response

    async def LoadModel(self, request: pb.LoadModelRequest, context: Context) -> pb.LoadModelResponse:
        async with self._rpc("LoadModel", context):
            start = time.perf_counter()
            entry = await self._core.load(request.path, request.name)
            return pb.LoadModelResponse(model=model_info(entry), load_ms=(time.perf_counter() - start) * 1000)

    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Context) -> pb.UnloadModelResponse:
        async with self._rpc("UnloadModel", context):
            return pb.UnloadModelResponse(unloaded=self._core.unload(request.model_name))
