"""The WebSocket load generator: frames through the proxy over the seed's v1 protocol or `lipsync.v2`.

    python -m loadtests.wsload --url ws://127.0.0.1:8086/ws --protocol v1 -c 8 -d 1 --duration 10 \\
        [--warmup 1] [--count N] [--model demo] [--frames 300] [--proxy-pid PID] [--backend-pid PID] \\
        [--json results.json]

C connections (`-c`), each with D requests outstanding (`-d`, pipelining): v1 replies come back in
request order, v2 replies by request id. Reports p50/p90/p99/max latency, frames/s, MB/s, errors by
code, and the CPU per frame of the proxy and backend processes given by pid (read from /proc).
permessage-deflate is never offered: JPEGs do not compress (a browser offers it; the proxy refuses).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import ssl
import struct
from collections.abc import Iterable, Mapping, Sequence

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from lipsync_protocol import v2
from lipsync_protocol.errors import ProtocolError
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

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
#: Large enough for any frame; the proxy bounds what it sends, not the client.
MAX_REPLY_BYTES = 64 << 20
PROTOCOLS = ("v1", "v2")
OPEN_TIMEOUT_S = 10.0


def v1_request(model: bytes, frame_id: int) -> bytes:
    """The seed's binary request: u8 name length, name, u32 frame id (little-endian)."""
    return bytes((len(model),)) + model + struct.pack("<I", frame_id)


def v1_reply_size(message: str | bytes) -> int:
    """The JPEG size of a v1 reply; raises RequestError for an error reply or anything else."""
    if isinstance(message, bytes):
        if message.startswith(JPEG_SOI) and message.endswith(JPEG_EOI):
            return len(message)
        raise RequestError(BAD_REPLY, f"a binary reply of {len(message)} bytes is not a JPEG")
    try:
        reply = json.loads(message)
        code = str(reply["code"])
    except (ValueError, KeyError, TypeError):
        raise RequestError(BAD_REPLY, f"unexpected text reply {message[:200]!r}") from None
    raise RequestError(code, str(reply.get("message", "")))


async def _connect(
    url: str, subprotocol: str | None, open_timeout: float, tls: ssl.SSLContext | None
) -> ClientConnection:
    return await connect(
        url,
        ssl=tls,
        subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
        compression=None,
        max_size=MAX_REPLY_BYTES,
        open_timeout=open_timeout,
        # Many connections from one process: do not queue more than a few replies per connection.
        max_queue=16,
    )


class V1Lane:
    """One v1 WebSocket: requests are answered in order, so a FIFO of waiters matches replies."""

    def __init__(self, ws: ClientConnection, model: str) -> None:
        self._ws = ws
        self._model = model.encode()
        self._waiting: collections.deque[asyncio.Future[int]] = collections.deque()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, model: str, tls: ssl.SSLContext | None = None) -> V1Lane:
        return cls(await _connect(url, None, OPEN_TIMEOUT_S, tls), model)

    async def request(self, frame_id: int) -> int:
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # Appended before the send, which writes its frame before it first yields: the FIFO and the
        # wire stay in the same order whatever the other workers of this lane do.
        self._waiting.append(waiter)
        try:
            await self._ws.send(v1_request(self._model, frame_id))
        except ConnectionClosed as closed:
            abandon(waiter)
            raise LaneClosedError(str(closed)) from None
        except asyncio.CancelledError:
            abandon(waiter)  # its reply, if one comes, is dropped by the reader
            raise
        return await waiter

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if not self._waiting:
                    continue  # a reply to a waiter that was cancelled and then dropped at close
                waiter = self._waiting.popleft()
                if waiter.done():
                    continue
                try:
                    waiter.set_result(v1_reply_size(message))
                except RequestError as failure:
                    waiter.set_exception(failure)
        finally:
            _fail_all(self._waiting, "the connection closed")

    async def close(self) -> None:
        await self._ws.close()
        await _stop(self._reader)


class V2Lane:
    """One `lipsync.v2` WebSocket: each INFER has a request id, replies may come in any order."""

    def __init__(self, ws: ClientConnection, model: str) -> None:
        self._ws = ws
        self._model = model
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._templates: dict[int, bytes] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, model: str, tls: ssl.SSLContext | None = None) -> V2Lane:
        return cls(await _connect(url, v2.SUBPROTOCOL, OPEN_TIMEOUT_S, tls), model)

    def _infer(self, request_id: int, frame_id: int) -> bytes:
        # Encoded (and checked by the codec) once per frame id; only the header's id changes.
        template = self._templates.get(frame_id)
        if template is None:
            template = v2.encode_client(v2.InferRequest(1, self._model, frame_id))
            self._templates[frame_id] = template
        data = bytearray(template)
        v2.HEADER.pack_into(data, 0, v2.VERSION, v2.INFER, 0, request_id)
        return bytes(data)

    async def request(self, frame_id: int) -> int:
        request_id = self._next_id
        self._next_id = request_id % v2.MAX_REQUEST_ID + 1
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        try:
            try:
                await self._ws.send(self._infer(request_id, frame_id))
            except ConnectionClosed as closed:
                abandon(waiter)
                raise LaneClosedError(str(closed)) from None
            except asyncio.CancelledError:
                abandon(waiter)
                raise
            return await waiter
        finally:
            self._waiting.pop(request_id, None)

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    continue  # JSON control replies; this client sends no JSON
                try:
                    reply = v2.decode_server(message)
                except ProtocolError:
                    continue
                waiter = self._waiting.get(reply.request_id)
                if waiter is None or waiter.done():
                    continue
                if isinstance(reply, v2.FrameReply):
                    waiter.set_result(len(reply.image))
                elif isinstance(reply, v2.ErrorReply):
                    waiter.set_exception(RequestError(reply.code, reply.message))
                else:
                    waiter.set_exception(RequestError(BAD_REPLY, f"{type(reply).__name__} to an INFER"))
        finally:
            _fail_all(list(self._waiting.values()), "the connection closed")

    async def close(self) -> None:
        await self._ws.close()
        await _stop(self._reader)


def _fail_all(waiters: Iterable[asyncio.Future[int]], why: str) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(LaneClosedError(why))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def lane_opener(url: str, protocol: str, model: str, tls: ssl.SSLContext | None = None) -> OpenLane:
    """How to open one lane of `protocol` ("v1" or "v2") to the proxy at `url` (wss:// with `tls`)."""
    if protocol == "v1":
        return lambda: V1Lane.open(url, model, tls)
    if protocol == "v2":
        return lambda: V2Lane.open(url, model, tls)
    raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")


async def ws_load(
    url: str,
    protocol: str,
    plan: Plan,
    *,
    watch: Sequence[Watched] = (),
    progress: Progress | None = None,
    labels: Mapping[str, object] | None = None,
    name: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> RunResult:
    """One measured run of `plan` against the proxy at `url`."""
    return await run_load(
        name or f"proxy {protocol}",
        url,
        lane_opener(url, protocol, plan.model, tls),
        plan,
        watch=watch,
        progress=progress,
        labels={"protocol": protocol, **(labels or {})},
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="WebSocket load through the lipsync proxy.")
    parser.add_argument("--url", default="ws://127.0.0.1:8086/ws")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="v1")
    add_plan_arguments(parser)
    args = parser.parse_args(argv)
    plan = plan_from(args)
    progress = Progress() if args.progress else None
    result = uvloop.run(ws_load(args.url, args.protocol, plan, watch=watched_from(args), progress=progress))
    report(result, args.json)


if __name__ == "__main__":
    main()
