"""Test doubles for the load-test tooling's tests.

- `ProxyDouble`: an in-process WebSocket server that answers like the proxy, on 127.0.0.1. A frame's
  reply is a JPEG-shaped payload of `1000 + frame_id` bytes, so a client's reply size names the frame
  it answers. v1 replies go out in request order; v2 replies to each batch of requests that arrived
  together go out in reverse order (out of order, as v2 allows). A frame id at or beyond `frames` gets
  the protocol's OUT_OF_RANGE error; `close_after` closes the connection after that many requests.
- `InstantLane`: a `Lane` answering every request at once, no sockets.
- `SlowingLane`: a `Lane` whose latency grows with the number of its kind open at once.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from lipsync_protocol import v2
from lipsync_protocol.fields import Bounds, OutputMode, Timings


def sized_jpeg(size: int) -> bytes:
    """A JPEG-shaped payload of `size` bytes (at least 4)."""
    return b"\xff\xd8" + bytes(size - 4) + b"\xff\xd9"


def size_for(frame_id: int) -> int:
    """The reply size the double gives frame `frame_id`."""
    return 1000 + frame_id


@dataclass
class ProxyDouble:
    frames: int = 300
    close_after: int | None = None
    requests: int = 0
    server: Server | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    async def start(self) -> ProxyDouble:
        self.server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol(v2.SUBPROTOCOL)],
            compression=None,
            select_subprotocol=lambda _, offered: (
                Subprotocol(v2.SUBPROTOCOL) if v2.SUBPROTOCOL in offered else None
            ),
        )
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def _counted(self) -> bool:
        """Count a request; whether the connection must close now."""
        self.requests += 1
        return self.close_after is not None and self.requests > self.close_after

    async def _serve(self, ws: ServerConnection) -> None:
        if ws.subprotocol == v2.SUBPROTOCOL:
            await self._serve_v2(ws)
        else:
            await self._serve_v1(ws)

    async def _serve_v1(self, ws: ServerConnection) -> None:
        async for message in ws:
            if self._counted():
                await ws.close()
                return
            assert isinstance(message, bytes)
            name_len = message[0]
            (frame_id,) = struct.unpack_from("<I", message, 1 + name_len)
            if frame_id >= self.frames:
                error = {"type": "error", "code": "OUT_OF_RANGE", "message": f"frame_id {frame_id}"}
                await ws.send(json.dumps(error))
            else:
                await ws.send(sized_jpeg(size_for(frame_id)))

    async def _serve_v2(self, ws: ServerConnection) -> None:
        while True:
            # Take every request that has arrived, then answer them newest first. (recv() may be
            # cancelled safely; an async iterator over the connection may not.)
            try:
                batch = [await ws.recv()]
                while True:
                    try:
                        batch.append(await asyncio.wait_for(ws.recv(), timeout=0.005))
                    except TimeoutError:
                        break
            except ConnectionClosed:
                return
            requests = []
            for message in batch:
                if self._counted():
                    await ws.close()
                    return
                assert isinstance(message, bytes)
                request = v2.decode_client(message)
                assert isinstance(request, v2.InferRequest)
                requests.append(request)
            for request in reversed(requests):
                await ws.send(self._v2_reply(request))

    def _v2_reply(self, request: v2.InferRequest) -> bytes:
        if request.frame_id >= self.frames:
            return v2.encode_error(request.request_id, "OUT_OF_RANGE", f"frame_id {request.frame_id}")
        return v2.encode_frame(
            request.request_id,
            request.frame_id,
            OutputMode.FULL_FRAME,
            Bounds(0, 0, 1, 1),
            1280,
            720,
            Timings(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1),
            sized_jpeg(size_for(request.frame_id)),
        )


class InstantLane:
    """Answers every request at once with `size_for(frame_id)`; counts what it saw."""

    def __init__(self) -> None:
        self.frame_ids: list[int] = []
        self.closed = False

    async def request(self, frame_id: int) -> int:
        self.frame_ids.append(frame_id)
        await asyncio.sleep(0)
        return size_for(frame_id)

    async def close(self) -> None:
        self.closed = True


@dataclass
class SlowingLane:
    """A lane whose every request takes `per_lane_s` × (lanes open) seconds: a service that slows
    down linearly with its number of viewers."""

    open_lanes: list[SlowingLane]
    per_lane_s: float

    def __post_init__(self) -> None:
        self.open_lanes.append(self)

    async def request(self, frame_id: int) -> int:
        await asyncio.sleep(self.per_lane_s * len(self.open_lanes))
        return size_for(frame_id)

    async def close(self) -> None:
        self.open_lanes.remove(self)
