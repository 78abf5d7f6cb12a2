"""Test doubles for the proxy's tests: a stand-in lip-sync backend and helpers to talk to it.

`FakeLipSync` is a small grpc.aio `lipsync.v1.LipSync` server with grpc.health.v1, returning a
JPEG-shaped payload of fixed size (starts FF D8, ends FF D9, names its frame id in bytes 2-5) for one
model of N frames. It fails like the real server
(unknown model → NOT_FOUND, frame outside [0, N) → OUT_OF_RANGE), can wait a configurable time per
call, and counts the calls it is serving so a test can see that a cancelled client left nothing running.
A `lipsync.test.Control` service (JSON over raw bytes) reports those counts and flips the health status.

Run it as a separate process:

    python services/proxy/tests/doubles.py --port 50061 [--frames 300] [--delay-ms 17]
        [--delay-ms-per-frame 1] [--payload-size 98432]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc

SERVICE = "lipsync.v1.LipSync"
CONTROL_STATS = "/lipsync.test.Control/Stats"
CONTROL_SET_SERVING = "/lipsync.test.Control/SetServing"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# 16 kHz PCM16 mono: 40 ms of audio (one frame at 25 fps) is 640 samples.
SPEAK_SAMPLES_PER_FRAME = 640


def traceparent_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The call's W3C `traceparent` metadata, or an empty string."""
    return str(dict(context.invocation_metadata() or ()).get("traceparent", ""))


def user_agent(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The user-agent a call came with."""
    return str(dict(context.invocation_metadata() or ()).get("user-agent", ""))


@dataclass(frozen=True)
class DoubleConfig:
    """What the fake backend serves."""

    model: str = "demo"
    frames: int = 300
    width: int = 1280
    height: int = 720
    fps: float = 25.0
    delay_s: float = 0.0
    # Frame f takes f times this long on top of delay_s, so that replies can complete out of order.
    delay_s_per_frame: float = 0.0
    payload_size: int = 98_432


def fake_jpeg(size: int, frame_id: int = 0) -> bytes:
    """A payload shaped like a JPEG (SOI ... EOI) of `size` bytes (at least 8) naming `frame_id`."""
    return JPEG_SOI + frame_id.to_bytes(4, "little") + bytes(max(0, size - 8)) + JPEG_EOI


def frame_id_of(payload: bytes) -> int:
    """The frame id a `fake_jpeg` payload names."""
    return int.from_bytes(payload[2:6], "little")


class FakeLipSync(lipsync_pb2_grpc.LipSyncServicer):
    """The lip-sync service as the proxy sees it, minus the lip-syncing."""

    def __init__(self, config: DoubleConfig) -> None:
        self.config = config
        self.active: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        # Streams the client ended itself (half-closed), as the proxy retires a stream.
        self.completed: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        # The user-agent of each InferBatch and Infer call: grpc's ("grpc-python-asyncio/…") or that
        # of the proxy's own HTTP/2 connections ("lipsync-proxy").
        self.batch_agents: list[str] = []
        self.infer_agents: list[str] = []
        # The `traceparent` of each Infer and InferBatch call, in the order they came.
        self.traceparents: list[str] = []
        # When set, StreamInfer fails with this status at its first request.
        self.fail_streams: grpc.StatusCode | None = None

    async def _check(self, name: str, frame_id: int, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        error = self._item_error(name, frame_id)
        if error is not None:
            status = next(code for code in grpc.StatusCode if code.value[0] == error.code)
            await context.abort(status, error.message)

    async def _tracked(self, method: str, work: Callable[[], Awaitable[Any]]) -> Any:
        self.calls[method] += 1
        self.active[method] += 1
        try:
            return await work()
        except asyncio.CancelledError:
            self.cancelled[method] += 1
            raise
        finally:
            self.active[method] -= 1

    def _info(self) -> lipsync_pb2.ModelInfo:
        c = self.config
        return lipsync_pb2.ModelInfo(
            name=c.model,
            engine="fake",
            state=lipsync_pb2.MODEL_STATE_READY,
            frame_count=c.frames,
            fps=c.fps,
            width=c.width,
            height=c.height,
            available_videos=["full_body"],
            package_format="lipsync-package/1",
        )

    async def ListModels(
        self, request: lipsync_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lipsync_pb2.ListModelsResponse:
        async def work() -> lipsync_pb2.ListModelsResponse:
            return lipsync_pb2.ListModelsResponse(models=[self._info()])

        result: lipsync_pb2.ListModelsResponse = await self._tracked("ListModels", work)
        return result

    async def GetModelMetadata(
        self, request: lipsync_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lipsync_pb2.ModelInfo:
        async def work() -> lipsync_pb2.ModelInfo:
            await self._check(request.model_name, 0, context)
            return self._info()

        result: lipsync_pb2.ModelInfo = await self._tracked("GetModelMetadata", work)
        return result

    async def GetVideoFrame(
        self, request: lipsync_pb2.GetVideoFrameRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lipsync_pb2.GetVideoFrameResponse:
        async def work() -> lipsync_pb2.GetVideoFrameResponse:
            await self._check(request.model_name, request.frame_id, context)
            return lipsync_pb2.GetVideoFrameResponse(
                model_name=request.model_name,
                frame_id=request.frame_id,
                image=fake_jpeg(self.config.payload_size, request.frame_id),
                width=self.config.width,
                height=self.config.height,
            )

        result: lipsync_pb2.GetVideoFrameResponse = await self._tracked("GetVideoFrame", work)
        return result

    def _frame(self, request: lipsync_pb2.InferRequest, frame_id: int) -> lipsync_pb2.InferResponse:
        return lipsync_pb2.InferResponse(
            request_id=request.request_id,
            model_name=request.model_name or self.config.model,
            frame_id=frame_id,
            output_mode=request.output_mode or lipsync_pb2.OUTPUT_MODE_FULL_FRAME,
            image=fake_jpeg(self.config.payload_size, frame_id),
            width=self.config.width,
            height=self.config.height,
            bounds=lipsync_pb2.Bounds(x1=550, y1=200, x2=730, y2=380),
            timings=lipsync_pb2.Timings(inference_ms=1.0, encode_ms=0.5, total_ms=1.5, batch_size=1),
        )

    async def _render(self, request: lipsync_pb2.InferRequest) -> lipsync_pb2.InferResponse:
        """One frame, however it was asked for; counted under "frame" while it is worked on. A bad
        request gives a response carrying its Error, as lipsync-server answers a batch item."""

        async def work() -> lipsync_pb2.InferResponse:
            error = self._item_error(request.model_name, request.frame_id)
            if error is not None:
                return lipsync_pb2.InferResponse(request_id=request.request_id, error=error)
            delay = self.config.delay_s + request.frame_id * self.config.delay_s_per_frame
            if delay:
                await asyncio.sleep(delay)
            return self._frame(request, request.frame_id)

        result: lipsync_pb2.InferResponse = await self._tracked("frame", work)
        return result

    async def Infer(
        self, request: lipsync_pb2.InferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lipsync_pb2.InferResponse:
        async def work() -> lipsync_pb2.InferResponse:
            self.infer_agents.append(user_agent(context))
            self.traceparents.append(traceparent_of(context))
            response = await self._render(request)
            if response.HasField("error"):
                status = next(code for code in grpc.StatusCode if code.value[0] == response.error.code)
                await context.abort(status, response.error.message)
            return response

        result: lipsync_pb2.InferResponse = await self._tracked("Infer", work)
        return result

    async def InferBatch(
        self, request: lipsync_pb2.InferBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lipsync_pb2.InferBatchResponse:
        """The items at once, each answered on its own (as lipsync-server does)."""

        async def work() -> lipsync_pb2.InferBatchResponse:
            self.batch_sizes.append(len(request.requests))
            self.batch_agents.append(user_agent(context))
            self.traceparents.append(traceparent_of(context))
            responses = await asyncio.gather(*(self._render(item) for item in request.requests))
            return lipsync_pb2.InferBatchResponse(responses=responses)

        result: lipsync_pb2.InferBatchResponse = await self._tracked("InferBatch", work)
        return result

    async def StreamInfer(
        self,
        request_iterator: AsyncIterator[lipsync_pb2.InferRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[lipsync_pb2.InferResponse]:
        """Each request's frame in request order, one at a time."""
        self.calls["StreamInfer"] += 1
        self.active["StreamInfer"] += 1
        try:
            async for request in request_iterator:
                if self.fail_streams is not None:
                    await context.abort(self.fail_streams, "the double fails its streams")
                yield await self._render(request)
            self.completed["StreamInfer"] += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled["StreamInfer"] += 1
            raise
        finally:
            self.active["StreamInfer"] -= 1

    def _item_error(self, name: str, frame_id: int) -> lipsync_pb2.Error | None:
        if name != self.config.model:
            message = f"model {name!r} not found; available models: {self.config.model}"
            return lipsync_pb2.Error(code=grpc.StatusCode.NOT_FOUND.value[0], message=message)
        if not 0 <= frame_id < self.config.frames:
            message = f"frame_id {frame_id} is outside [0, {self.config.frames}) for model {name!r}"
            return lipsync_pb2.Error(code=grpc.StatusCode.OUT_OF_RANGE.value[0], message=message)
        return None

    async def Speak(
        self,
        request_iterator: AsyncIterator[lipsync_pb2.SpeakRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[lipsync_pb2.SpeakResponse]:
        """One frame per 40 ms of audio, sent as soon as the audio is in (no fps pacing)."""
        self.calls["Speak"] += 1
        self.active["Speak"] += 1
        self.traceparents.append(traceparent_of(context))
        try:
            start: lipsync_pb2.SpeakStart | None = None
            pending = 0
            sequence = 0
            async for message in request_iterator:
                kind = message.WhichOneof("kind")
                if kind == "start":
                    start = message.start
                    await self._check(start.model_name, start.start_frame_id, context)
                    continue
                if start is None:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a start")
                    return
                if kind == "audio":
                    pending += len(message.audio) // 2
                    while pending >= SPEAK_SAMPLES_PER_FRAME:
                        pending -= SPEAK_SAMPLES_PER_FRAME
                        yield self._speak_frame(start, sequence, end=False)
                        sequence += 1
                elif message.control.action == lipsync_pb2.SpeakControl.ACTION_INTERRUPT:
                    pending = 0
                elif message.control.action == lipsync_pb2.SpeakControl.ACTION_END:
                    yield self._speak_frame(start, sequence, end=True)
                    return
            # The requests ended without ACTION_END: a client cancelling the call looks like this here
            # (context.cancelled() is not yet true when the request iterator stops).
            self.cancelled["Speak"] += 1
        except (asyncio.CancelledError, GeneratorExit):
            # Or so, when the cancellation finds the handler sending a frame the client does not read.
            self.cancelled["Speak"] += 1
            raise
        finally:
            self.active["Speak"] -= 1

    def _speak_frame(
        self, start: lipsync_pb2.SpeakStart, sequence: int, end: bool
    ) -> lipsync_pb2.SpeakResponse:
        request = lipsync_pb2.InferRequest(
            request_id=start.request_id, model_name=start.model_name, output_mode=start.output_mode
        )
        frame_id = (start.start_frame_id + sequence) % self.config.frames
        return lipsync_pb2.SpeakResponse(
            sequence=sequence,
            audio_time_ms=sequence * 1000.0 / self.config.fps,
            frame=self._frame(request, frame_id),
            end_of_utterance=end,
        )

    def stats(self) -> dict[str, dict[str, int]]:
        """Calls being served now, served in all, cancelled by their client, and streams ended by the
        client, per method; "frame" counts frames, whichever method carried them."""
        return {
            "active": dict(self.active),
            "calls": dict(self.calls),
            "cancelled": dict(self.cancelled),
            "completed": dict(self.completed),
        }


def _control_handler(
    servicer: FakeLipSync, health_servicer: health.aio.HealthServicer
) -> grpc.GenericRpcHandler:
    async def stats(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return json.dumps(servicer.stats()).encode()

    async def set_serving(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        serving = json.loads(request)["serving"]
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE):
            await health_servicer.set(name, status)
        return b"{}"

    return grpc.method_handlers_generic_handler(
        "lipsync.test.Control",
        {
            "Stats": grpc.unary_unary_rpc_method_handler(stats),
            "SetServing": grpc.unary_unary_rpc_method_handler(set_serving),
        },
    )


@dataclass
class RunningDouble:
    """A fake backend serving in this process."""

    server: grpc.aio.Server
    servicer: FakeLipSync
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_double(
    port: int, config: DoubleConfig, host: str = "127.0.0.1", with_health: bool = True
) -> RunningDouble:
    """Start a fake backend on host:port (0 picks a free one); without grpc.health.v1 if asked."""
    server = grpc.aio.server()
    servicer = FakeLipSync(config)
    health_servicer = health.aio.HealthServicer()
    lipsync_pb2_grpc.add_LipSyncServicer_to_server(servicer, server)
    if with_health:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((_control_handler(servicer, health_servicer),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningDouble(server, servicer, bound)


async def double_stats(address: str) -> dict[str, dict[str, int]]:
    """Ask the double at `address` what it is serving."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply: bytes = await channel.unary_unary(CONTROL_STATS)(b"", timeout=5)
    result: dict[str, dict[str, int]] = json.loads(reply)
    return result


async def set_double_serving(address: str, serving: bool) -> None:
    """Make the double at `address` report SERVING or NOT_SERVING on grpc.health.v1."""
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.unary_unary(CONTROL_SET_SERVING)(json.dumps({"serving": serving}).encode(), timeout=5)


async def _run(port: int, config: DoubleConfig) -> None:
    double = await start_double(port, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await double.server.stop(grace=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake lipsync.v1 backend for the proxy's tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=DoubleConfig.model)
    parser.add_argument("--frames", type=int, default=DoubleConfig.frames)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="time every Infer takes")
    parser.add_argument("--delay-ms-per-frame", type=float, default=0.0, help="and frame f f times this")
    parser.add_argument("--payload-size", type=int, default=DoubleConfig.payload_size)
    args = parser.parse_args(argv)
    config = DoubleConfig(
        model=args.model,
        frames=args.frames,
        delay_s=args.delay_ms / 1000.0,
        delay_s_per_frame=args.delay_ms_per_frame / 1000.0,
        payload_size=args.payload_size,
    )
    try:
        asyncio.run(_run(args.port, config))
    except OSError as exc:
        sys.stderr.write(f"doubles: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
