"""The direct baselines: a client calling the gRPC backend itself, with no proxy in between.

    python -m loadtests.direct --addr 127.0.0.1:50051 --mode unary -c 8 --duration 10 [--backend-pid PID]

Two callers, both on one grpc.aio channel per client (as the proxy has one):

- `unary`: one `Infer` call per frame, C × D calls in flight;
- `stream`: one `StreamInfer` stream per connection with D requests outstanding on it; the server
  answers a stream in request order.

Requests are serialized once per frame id and the image is sliced out of the response bytes, so the
client costs about what the proxy's own gRPC side costs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
from collections.abc import Mapping, Sequence

import grpc
import uvloop
from google.protobuf.message import DecodeError

from lipsync_protos.lipsync.v1 import lipsync_pb2
from loadtests.cli import add_plan_arguments, plan_from, report, watched_from
from loadtests.driver import (
    BAD_REPLY,
    LaneClosedError,
    OpenLane,
    Plan,
    RequestError,
    Watched,
    abandon,
    run_load,
)
from loadtests.progress import Progress
from loadtests.stats import RunResult

INFER = "/lipsync.v1.LipSync/Infer"
STREAM_INFER = "/lipsync.v1.LipSync/StreamInfer"
MODES = ("unary", "stream")
#: The proxy's deadline per call.
TIMEOUT_S = 5.0
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]


class Requests:
    """Serialized `InferRequest`s, one per frame id, made on first use."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._cache: dict[int, bytes] = {}

    def __call__(self, frame_id: int) -> bytes:
        data = self._cache.get(frame_id)
        if data is None:
            data = lipsync_pb2.InferRequest(model_name=self._model, frame_id=frame_id).SerializeToString()
            self._cache[frame_id] = data
        return data


def reply_size(response: bytes) -> int:
    """The image size of a serialized `InferResponse`; raises RequestError for an item error."""
    try:
        reply = lipsync_pb2.InferResponse.FromString(response)
    except DecodeError as error:
        raise RequestError(BAD_REPLY, str(error)) from None
    if reply.HasField("error"):
        code = next((c.name for c in grpc.StatusCode if c.value[0] == reply.error.code), "UNKNOWN")
        raise RequestError(code, reply.error.message)
    if reply.image:
        return len(reply.image)
    raise RequestError(BAD_REPLY, "a response with neither an image nor an error")


class UnaryLane:
    """A connection of the unary caller: every request is its own `Infer` call."""

    def __init__(self, channel: grpc.aio.Channel, requests: Requests) -> None:
        self._infer: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER)
        self._requests = requests

    async def request(self, frame_id: int) -> int:
        try:
            response: bytes = await self._infer(self._requests(frame_id), timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise RequestError(error.code().name, error.details() or "") from None
        return reply_size(response)

    async def close(self) -> None:
        """Nothing to close: the calls end with their replies; the channel is the client's."""


class StreamLane:
    """A connection of the streaming caller: one `StreamInfer` stream, answered in request order."""

    def __init__(self, channel: grpc.aio.Channel, requests: Requests) -> None:
        self._call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(STREAM_INFER)()
        self._requests = requests
        self._waiting: collections.deque[asyncio.Future[int]] = collections.deque()
        # Writes must not overlap on a call; the lock also keeps the FIFO in wire order.
        self._writing = asyncio.Lock()
        self._reader = asyncio.create_task(self._read())

    async def request(self, frame_id: int) -> int:
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with self._writing:
            self._waiting.append(waiter)
            try:
                await self._call.write(self._requests(frame_id))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError) as error:
                abandon(waiter)
                raise LaneClosedError(str(error)) from None
            except asyncio.CancelledError:
                abandon(waiter)  # its reply, if one comes, is dropped by the reader
                raise
        return await waiter

    async def _read(self) -> None:
        why = "the stream ended"
        try:
            while True:
                response = await self._call.read()
                if not isinstance(response, bytes):  # grpc.aio.EOF
                    return
                waiter = self._waiting.popleft()
                if waiter.done():
                    continue
                try:
                    waiter.set_result(reply_size(response))
                except RequestError as failure:
                    waiter.set_exception(failure)
        except grpc.aio.AioRpcError as error:
            why = f"the stream failed: {error.code().name} {error.details()}"
        finally:
            for waiter in self._waiting:
                if not waiter.done():
                    waiter.set_exception(LaneClosedError(why))

    async def close(self) -> None:
        self._call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class DirectClient:
    """One channel to the backend; lanes of either mode share it."""

    def __init__(self, address: str, model: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._requests = Requests(model)

    def opener(self, mode: str) -> OpenLane:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")

        async def open_lane() -> UnaryLane | StreamLane:
            if mode == "unary":
                return UnaryLane(self.channel, self._requests)
            return StreamLane(self.channel, self._requests)

        return open_lane

    async def close(self) -> None:
        await self.channel.close()


async def direct_load(
    address: str,
    mode: str,
    plan: Plan,
    *,
    watch: Sequence[Watched] = (),
    progress: Progress | None = None,
    labels: Mapping[str, object] | None = None,
    name: str | None = None,
) -> RunResult:
    """One measured run of `plan` straight against the backend at `address`."""
    client = DirectClient(address, plan.model)
    try:
        await client.channel.channel_ready()
        return await run_load(
            name or f"direct {mode}",
            address,
            client.opener(mode),
            plan,
            watch=watch,
            progress=progress,
            labels={"mode": mode, **(labels or {})},
        )
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gRPC load straight against a lipsync.v1 backend.")
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--mode", choices=MODES, default="unary")
    add_plan_arguments(parser)
    args = parser.parse_args(argv)
    progress = Progress() if args.progress else None
    result = uvloop.run(
        direct_load(args.addr, args.mode, plan_from(args), watch=watched_from(args), progress=progress)
    )
    report(result, args.json)


if __name__ == "__main__":
    main()
