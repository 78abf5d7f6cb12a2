"""A benchmark double of `lipsync-server`: a fixed-payload `lipsync.v1.LipSync` backend.

Not a lip-sync server. It answers every `Infer`, every `StreamInfer` item and every `InferBatch`
item with the same pre-serialized `InferResponse` whose image is a 98,432-byte JPEG-shaped payload
(SOI, incompressible bytes, EOI), after a configurable delay, so a benchmark measures the proxy and the
client, not the rendering. It spends as little as it can per frame: `Infer` and `StreamInfer` requests
are not parsed (an `InferBatch` is, for its count) and the response is serialized once. `StreamInfer`
works on up to 8 requests of a stream at once and answers in request order, and the items of an
`InferBatch` are worked on at once (one delay per call), as the real server does. grpc.health.v1
reports SERVING; `ListModels` and `GetModelMetadata` describe one model so the proxy's health and
metadata paths work.

    python -m loadtests.backend --port 50061 [--delay-ms 17] [--payload-size 98432]

The proxy's own tests use a different double (services/proxy/tests/doubles.py) that checks model
names and frame ids, counts calls and fails on purpose; this one only has to be cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2

SERVICE = "lipsync.v1.LipSync"
#: The frame size SPEC §9 measures the proxy with.
PAYLOAD_SIZE = 98_432
#: Requests of one stream worked on at once, as lipsync-server's StreamInfer.
STREAM_WINDOW = 8
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class BackendConfig:
    """What the benchmark backend serves."""

    model: str = "demo"
    frames: int = 300
    width: int = 1280
    height: int = 720
    delay_s: float = 0.0
    payload_size: int = PAYLOAD_SIZE


def payload(size: int = PAYLOAD_SIZE) -> bytes:
    """A JPEG-shaped payload of `size` bytes (at least 4): SOI, pseudo-random bytes, EOI.

    Random bytes do not compress, like a JPEG's entropy-coded data, so a compressing hop costs here
    what it would cost on real frames. The same bytes every time (fixed seed)."""
    if size < len(JPEG_SOI) + len(JPEG_EOI):
        raise ValueError(f"a payload needs at least 4 bytes, not {size}")
    filler = random.Random(size).randbytes(size - 4)
    return JPEG_SOI + filler + JPEG_EOI


def infer_response(config: BackendConfig) -> bytes:
    """The serialized `InferResponse` every frame gets."""
    return lipsync_pb2.InferResponse(
        model_name=config.model,
        output_mode=lipsync_pb2.OUTPUT_MODE_FULL_FRAME,
        image=payload(config.payload_size),
        width=config.width,
        height=config.height,
        bounds=lipsync_pb2.Bounds(x1=550, y1=200, x2=730, y2=380),
        timings=lipsync_pb2.Timings(total_ms=config.delay_s * 1000.0, batch_size=1),
    ).SerializeToString()


class BenchmarkBackend:
    """The handlers. Requests arrive and responses leave as bytes (no (de)serializers)."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self._response = infer_response(config)
        # Serialized messages concatenate into their merge, so N copies of a one-item InferBatchResponse
        # are the response of N items.
        self._batch_item = lipsync_pb2.InferBatchResponse(
            responses=[lipsync_pb2.InferResponse.FromString(self._response)]
        ).SerializeToString()
        self._batches: dict[int, bytes] = {}
        self._model = lipsync_pb2.ModelInfo(
            name=config.model,
            engine="benchmark-double",
            state=lipsync_pb2.MODEL_STATE_READY,
            frame_count=config.frames,
            fps=25.0,
            width=config.width,
            height=config.height,
            package_format="lipsync-package/1",
        )

    async def infer(self, request: bytes, context: Context) -> bytes:
        if self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        return self._response

    async def infer_batch(self, request: bytes, context: Context) -> bytes:
        # The items are worked on at once (as lipsync-server's InferBatch does): one delay per call.
        count = len(lipsync_pb2.InferBatchRequest.FromString(request).requests)
        if self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        response = self._batches.get(count)
        if response is None:
            # Serialized once per batch size, as the one-frame response is.
            response = self._batches[count] = self._batch_item * count
        return response

    async def stream_infer(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        response = self._response
        delay = self.config.delay_s
        if not delay:
            async for _ in requests:
                yield response
            return
        # Each request is due `delay` after it arrived; equal delays keep the due times in request order.
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[float | None] = asyncio.Queue(STREAM_WINDOW)

        async def read() -> None:
            try:
                async for _ in requests:
                    await due.put(loop.time() + delay)
            finally:
                await due.put(None)

        reader = asyncio.create_task(read())
        try:
            while (at := await due.get()) is not None:
                await asyncio.sleep(max(0.0, at - loop.time()))
                yield response
            await reader
        finally:
            reader.cancel()

    async def list_models(
        self, request: lipsync_pb2.ListModelsRequest, context: Context
    ) -> lipsync_pb2.ListModelsResponse:
        return lipsync_pb2.ListModelsResponse(models=[self._model])

    async def get_model_metadata(
        self, request: lipsync_pb2.GetModelMetadataRequest, context: Context
    ) -> lipsync_pb2.ModelInfo:
        if request.model_name != self.config.model:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_name!r} not found")
        return self._model

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Infer": grpc.unary_unary_rpc_method_handler(self.infer),
                "StreamInfer": grpc.stream_stream_rpc_method_handler(self.stream_infer),
                "InferBatch": grpc.unary_unary_rpc_method_handler(self.infer_batch),
                "ListModels": grpc.unary_unary_rpc_method_handler(
                    self.list_models,
                    request_deserializer=lipsync_pb2.ListModelsRequest.FromString,
                    response_serializer=lipsync_pb2.ListModelsResponse.SerializeToString,
                ),
                "GetModelMetadata": grpc.unary_unary_rpc_method_handler(
                    self.get_model_metadata,
                    request_deserializer=lipsync_pb2.GetModelMetadataRequest.FromString,
                    response_serializer=lipsync_pb2.ModelInfo.SerializeToString,
                ),
            },
        )


@dataclass
class RunningBackend:
    server: grpc.aio.Server
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_backend(config: BackendConfig, port: int = 0, host: str = "127.0.0.1") -> RunningBackend:
    """Serve the benchmark backend on host:port (0 picks a free port) in this event loop."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((BenchmarkBackend(config).handler(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningBackend(server, bound)


async def _serve(config: BackendConfig, port: int, host: str) -> None:
    backend = await start_backend(config, port, host)
    logger.info(
        "benchmark backend on %s:%d: %d-byte frames, %.1f ms delay",
        host,
        backend.port,
        config.payload_size,
        config.delay_s * 1000,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await backend.server.stop(grace=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="gRPC port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default=BackendConfig.model)
    parser.add_argument("--frames", type=int, default=BackendConfig.frames)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="time every frame takes")
    parser.add_argument("--payload-size", type=int, default=PAYLOAD_SIZE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = BackendConfig(
        model=args.model, frames=args.frames, delay_s=args.delay_ms / 1000.0, payload_size=args.payload_size
    )
    try:
        asyncio.run(_serve(config, args.port, args.host))
    except OSError as exc:
        logger.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
