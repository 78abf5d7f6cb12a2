"""The proxy's calls to the lip-sync backends, each on a SERVING backend that `BackendPool` picks.

Frames go through the dispatcher (`lipsync_proxy.dispatch`); the lookups and `Speak` streams on the
picked backend's gRPC channel, a lookup that failed UNAVAILABLE (its backend died under it) once more
on another within its deadline. A failed call raises :class:`lipsync_proxy.errors.BackendError`; a
cancelled awaiting task cancels its call.

A call made inside a request's span sends that span's context as its `traceparent`, so the server's
spans join the request's trace; every other call (the model refresh among them) sends one whose sampled
flag is off, so the server does not trace it either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc
from lipsync_proxy.backends import BackendPool
from lipsync_proxy.dispatch import FrameDispatcher, Metadata, traceparent, untraced
from lipsync_proxy.errors import BackendError, failure, rpc_error, status_of_number
from lipsync_proxy.metrics import Metrics

if TYPE_CHECKING:
    # Only in the generated stubs: the type of a stub on a grpc.aio channel.
    from lipsync_protos.lipsync.v1.lipsync_pb2_grpc import LipSyncAsyncStub

Request = TypeVar("Request")
Reply = TypeVar("Reply")


class Frame(NamedTuple):
    """A frame's reply, and its image read out of it once: every read of a bytes field is a copy."""

    reply: lipsync_pb2.InferResponse
    image: bytes


class BackendClient:
    """Calls to the backends of one pool."""

    def __init__(
        self,
        pool: BackendPool,
        timeout_s: float,
        session_timeout_s: float,
        metrics: Metrics,
        max_batch: int = 1,
        tracer: Tracer | None = None,
    ) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.session_timeout_s = session_timeout_s
        self._tracer = tracer
        self._dispatcher = FrameDispatcher(pool, timeout_s, max_batch, tracer, metrics.record_frames)
        self._latency = metrics.grpc_latency

    def submit(
        self, request: bytes, span: Span | None = None, traceparent: str | None = None
    ) -> asyncio.Future[lipsync_pb2.InferResponse]:
        """The future of the `InferResponse` of one serialized `InferRequest` (`FrameDispatcher.submit`;
        `check` it). Cancelling the future gives the frame up."""
        return self._dispatcher.submit(request, span, traceparent)

    async def infer(self, request: bytes, traceparent: str | None = None) -> Frame:
        """The reply to one serialized `InferRequest`, made for the current request's span; raises
        BackendError, the frame's own error too."""
        span = trace.get_current_span() if self._tracer is not None else None
        recorded = span if span is not None and span.is_recording() else None
        return self.check(await self.submit(request, recorded, traceparent))

    @staticmethod
    def check(reply: lipsync_pb2.InferResponse) -> Frame:
        """A frame's reply with its image, unless it is the frame's own error or has no image
        (BackendError)."""
        if reply.HasField("error"):
            raise failure(status_of_number(reply.error.code), reply.error.message)
        image = reply.image
        if not image:
            raise BackendError(grpc.StatusCode.INTERNAL, "the backend returned no image")
        return Frame(reply, image)

    def metadata(self, passed_on: str | None = None) -> Metadata:
        """The trace context of a call made now (see the module's docstring); `passed_on`, a client's
        `traceparent`, goes as it came while the proxy does not trace."""
        if self._tracer is None:
            return untraced() if passed_on is None else (("traceparent", passed_on),)
        span = trace.get_current_span()
        return traceparent(span) if span.get_span_context().is_valid else untraced()

    async def _lookup(
        self,
        method: str,
        request: Request,
        rpc: Callable[[LipSyncAsyncStub], grpc.aio.UnaryUnaryMultiCallable[Request, Reply]],
    ) -> Reply:
        """`rpc`'s reply to `request` (`method` names it in the metrics), asked of another backend
        once more when the first died under the call (UNAVAILABLE), within the one deadline."""
        metadata = self.metadata()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        started = time.perf_counter()
        channel = None
        try:
            for attempt in range(2):
                channel = await self.pool.channel(deadline, avoid=channel)
                call = rpc(lipsync_pb2_grpc.LipSyncStub(channel))
                try:
                    return await call(request, timeout=deadline - loop.time(), metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    if attempt or exc.code() != grpc.StatusCode.UNAVAILABLE or loop.time() >= deadline:
                        raise rpc_error(exc) from None
            raise AssertionError("unreachable")
        finally:
            self._latency.observe((method,), time.perf_counter() - started)

    async def list_models(self) -> list[lipsync_pb2.ModelInfo]:
        """The models of one backend; raises BackendError."""
        reply = await self._lookup(
            "ListModels", lipsync_pb2.ListModelsRequest(), lambda stub: stub.ListModels
        )
        return list(reply.models)

    async def model_info(self, model_name: str) -> lipsync_pb2.ModelInfo:
        """One model's metadata; raises BackendError (NOT_FOUND for an unknown model)."""
        request = lipsync_pb2.GetModelMetadataRequest(model_name=model_name)
        return await self._lookup("GetModelMetadata", request, lambda stub: stub.GetModelMetadata)

    async def video_frame(self, model_name: str, frame_id: int) -> lipsync_pb2.GetVideoFrameResponse:
        """One unmodified base frame; raises BackendError."""
        request = lipsync_pb2.GetVideoFrameRequest(model_name=model_name, frame_id=frame_id)
        return await self._lookup("GetVideoFrame", request, lambda stub: stub.GetVideoFrame)

    async def model_audio(self, model_name: str) -> lipsync_pb2.GetModelAudioResponse:
        """The package's audio track as a WAV file; raises BackendError."""
        request = lipsync_pb2.GetModelAudioRequest(model_name=model_name)
        return await self._lookup("GetModelAudio", request, lambda stub: stub.GetModelAudio)

    async def speak(
        self, metadata: Metadata | None
    ) -> grpc.aio.StreamStreamCall[lipsync_pb2.SpeakRequest, lipsync_pb2.SpeakResponse]:
        """A new `Speak` stream on a SERVING backend (BackendError UNAVAILABLE when none is); the caller
        writes requests and reads frames, and cancels it when done."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        stub = lipsync_pb2_grpc.LipSyncStub(await self.pool.channel(deadline))
        call: grpc.aio.StreamStreamCall[lipsync_pb2.SpeakRequest, lipsync_pb2.SpeakResponse] = stub.Speak(
            timeout=self.session_timeout_s, metadata=metadata
        )
        return call

    async def close(self) -> None:
        """Give up the frames under way and close the pool."""
        await self._dispatcher.close()
        await self.pool.close()
