"""The clients of the fault tests: well-behaved `lipsync.v2` load, and the misbehaving kinds.

* `V2Connection`: one `lipsync.v2` WebSocket; `infer` sends an INFER and records its answer in the
  request's `Outcome` (a FRAME must be a JPEG of the frame asked for).
* `closed_loop`: connections each keeping `window` requests outstanding until told to stop; a
  connection closed with 1001 (a proxy shutting down) is replaced by one to the next URL and its
  unanswered requests are sent again, as a client behind a load balancer would.
* `open_loop`: requests at a fixed rate whatever the answers, to offer more than the capacity.
* `RawClient`: a WebSocket on a bare socket, for clients that stop reading (a small receive buffer,
  never read) or vanish (closed with a TCP reset, requests in flight).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol

from lipsync_protocol import v2
from lipsync_protocol.errors import ProtocolError
from loadtests.chaos.ledger import OK, WRONG, Ledger, Outcome

#: WebSocket close codes: a proxy shutting down (the client should reconnect), an abnormal loss.
GOING_AWAY = 1001
ABNORMAL = 1006
OPEN_TIMEOUT_S = 5.0


class ConnectionLostError(Exception):
    """The connection closed before a request's answer came."""


def is_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"


class V2Connection:
    """One `lipsync.v2` WebSocket; replies are matched to requests by id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 1
        self._waiting: dict[int, tuple[Outcome, asyncio.Future[None]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, headers: Mapping[str, str] | None = None) -> V2Connection:
        ws = await asyncio.wait_for(
            connect(
                url,
                subprotocols=[Subprotocol(v2.SUBPROTOCOL)],
                compression=None,
                max_size=None,
                additional_headers=dict(headers or {}),
                open_timeout=OPEN_TIMEOUT_S,
            ),
            OPEN_TIMEOUT_S,
        )
        return cls(ws)

    @property
    def close_code(self) -> int | None:
        """The code the peer closed with (1006 when the TCP connection was lost), None while open."""
        if self._reader.done():
            return self.ws.close_code if self.ws.close_code is not None else ABNORMAL
        return None

    async def infer(self, outcome: Outcome, model: str = "demo") -> None:
        """Send `outcome`'s request and wait for its answer; raise ConnectionLostError when the connection
        closes first (the outcome is then left unanswered)."""
        request_id = self._next_id
        self._next_id = request_id % v2.MAX_REQUEST_ID + 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (outcome, waiter)
        try:
            try:
                await self.ws.send(v2.encode_client(v2.InferRequest(request_id, model, outcome.frame_id)))
            except ConnectionClosed:
                raise ConnectionLostError from None
            await waiter
        finally:
            self._waiting.pop(request_id, None)

    async def send(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    continue
                try:
                    reply = v2.decode_server(message)
                except ProtocolError:
                    continue
                entry = self._waiting.pop(reply.request_id, None)
                if entry is None:
                    continue
                outcome, waiter = entry
                outcome.done = time.monotonic()
                if isinstance(reply, v2.FrameReply):
                    good = reply.frame_id == outcome.frame_id and is_jpeg(reply.image)
                    outcome.code = OK if good else WRONG
                elif isinstance(reply, v2.ErrorReply):
                    outcome.code = reply.code
                else:
                    outcome.code = WRONG
                if not waiter.done():
                    waiter.set_result(None)
        except ConnectionClosed:
            pass
        finally:
            for _, waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionLostError())

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@dataclass
class LoadStats:
    """What happened to the connections of a load run."""

    closes: Counter[int] = field(default_factory=Counter)
    resent: int = 0
    reconnects: int = 0


async def closed_loop(
    urls: Sequence[str],
    connections: int,
    window: int,
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    frames: int = 300,
    model: str = "demo",
    error_pause_s: float = 0.05,
) -> LoadStats:
    """Keep `window` requests outstanding on each of `connections` connections until `stop` is set;
    returns once every request sent has its answer (the caller bounds the wait). After an error reply
    a slot pauses `error_pause_s`, as a client backing off would, instead of spinning on errors."""
    stats = LoadStats()
    lanes = (
        _lane(urls, index, window, ledger, stop, frames, model, error_pause_s, stats)
        for index in range(connections)
    )
    await asyncio.gather(*lanes)
    return stats


async def _lane(
    urls: Sequence[str],
    index: int,
    window: int,
    ledger: Ledger,
    stop: asyncio.Event,
    frames: int,
    model: str,
    error_pause_s: float,
    stats: LoadStats,
) -> None:
    order = itertools.cycle([*urls[index % len(urls) :], *urls[: index % len(urls)]])
    current: V2Connection | None = None
    opening = asyncio.Lock()

    async def connection() -> V2Connection:
        nonlocal current
        async with opening:
            while current is None or current.close_code is not None:
                try:
                    current = await V2Connection.open(next(order))
                    stats.reconnects += 1
                except (OSError, InvalidHandshake, TimeoutError):
                    # Refused while a proxy restarts, or 503 while it drains: try the next one.
                    await asyncio.sleep(0.05)
            return current

    async def slot(first: int) -> None:
        frame = first
        while not stop.is_set():
            outcome = ledger.start(frame % frames, time.monotonic())
            while outcome.code is None:
                ws = await connection()
                try:
                    await ws.infer(outcome, model)
                except ConnectionLostError:
                    code = ws.close_code or ABNORMAL
                    stats.closes[code] += 1
                    if code != GOING_AWAY:
                        outcome.done, outcome.code = time.monotonic(), f"CLOSED_{code}"
                    else:
                        # Unread by the proxy that went away (it answers all it read): send it again.
                        outcome.resent += 1
                        stats.resent += 1
            if outcome.code != OK:
                await asyncio.sleep(error_pause_s)
            frame += window

    try:
        await asyncio.gather(*(slot(index * window + k) for k in range(window)))
    finally:
        if current is not None:
            await current.close()
        stats.reconnects -= 1  # the first connection is no reconnect


async def open_loop(
    url: str,
    connections: int,
    per_connection_rate: float,
    duration_s: float,
    ledger: Ledger,
    *,
    frames: int = 300,
    model: str = "demo",
    drain_s: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Send `per_connection_rate` requests a second on each connection for `duration_s`, whatever the
    answers; then wait up to `drain_s` for the answers still due."""
    lanes = [await V2Connection.open(url, headers) for _ in range(connections)]
    pending: set[asyncio.Task[None]] = set()
    # One request at a time over the connections in turn: arrivals spread evenly, not in bursts.
    interval = 1.0 / (per_connection_rate * connections)
    started = time.monotonic()
    sent = 0
    try:
        while (now := time.monotonic()) < started + duration_s:
            while sent < int((now - started) / interval) + 1:
                outcome = ledger.start(sent // connections % frames, time.monotonic())
                task = asyncio.create_task(_answer(lanes[sent % connections], outcome, model))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(max(0.0, started + sent * interval - time.monotonic()))
        if pending:
            await asyncio.wait(pending, timeout=drain_s)
    finally:
        for task in pending:
            task.cancel()
        for lane in lanes:
            await lane.close()


async def _answer(lane: V2Connection, outcome: Outcome, model: str) -> None:
    try:
        await lane.infer(outcome, model)
    except ConnectionLostError:
        outcome.done, outcome.code = time.monotonic(), f"CLOSED_{lane.close_code}"


class RawClient:
    """A WebSocket client on a bare non-blocking socket: it sends, and reads only when asked."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # The unsent end of a frame the socket took only part of.
        self._backlog = b""

    @classmethod
    def open(
        cls,
        port: int,
        *,
        protocol: str | None = None,
        receive_buffer: int | None = None,
        timeout: float = 5.0,
    ) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connect, so that the window the peer sees is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /ws HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(1)  # byte by byte: nothing past the handshake may be read
            if not chunk:
                raise ConnectionError("the proxy closed the connection during the handshake")
            response += chunk
        if not response.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {response.splitlines()[0]!r}")
        sock.setblocking(False)
        return cls(sock)

    def send(self, payload: bytes | str) -> bool:
        """Queue one message; False when the socket cannot take it now (the peer is not reading and
        the buffers are full). A frame the socket took only part of is finished by later calls."""
        if self._backlog and not self._flush():
            return False
        opcode = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
        data = payload.encode() if isinstance(payload, str) else payload
        self._backlog = Frame(opcode, data).serialize(mask=True, extensions=[])
        self._flush()
        return True

    def _flush(self) -> bool:
        try:
            sent = self.sock.send(self._backlog)
        except BlockingIOError:
            return False
        self._backlog = self._backlog[sent:]
        return not self._backlog

    def vanish(self) -> None:
        """Close with a TCP reset, as a client whose machine or network went away (no close frame)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
