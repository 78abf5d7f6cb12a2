"""The own HTTP/2 client against a second, independent server implementation: the `h2` library, which
frames its replies its own way (padding, small frames, its own HPACK encoder, its own settings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from lipsync_common.waiting import TIME_UNIT
from lipsync_proxy.http2 import Http2Connection

from .test_http2 import started_call


class H2Server(asyncio.Protocol):
    """Answers every unary call with its own message reversed, three times, in DATA frames of at most
    `max_frame` bytes with `pad` bytes of padding each."""

    def __init__(self, pad: int, max_frame: int) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.pad = pad
        self.max_frame = max_frame
        self.transport: asyncio.Transport | None = None
        self.bodies: dict[int, bytearray] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 16_384})
        self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.bodies[event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.answer(event.stream_id, bytes(self.bodies.pop(event.stream_id)[5:]))
        self.flush()

    def answer(self, stream_id: int, message: bytes) -> None:
        reply = message[::-1] * 3
        body = b"\x00" + len(reply).to_bytes(4, "big") + reply
        self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        step = self.max_frame - self.pad - 1
        for offset in range(0, len(body), step):
            self.h2.send_data(stream_id, body[offset : offset + step], pad_length=self.pad or None)
        self.h2.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)


async def connected(pad: int, max_frame: int) -> AsyncIterator[Http2Connection]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: H2Server(pad, max_frame), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, connection = await loop.create_connection(
        lambda: Http2Connection(f"127.0.0.1:{port}"), "127.0.0.1", port
    )
    try:
        yield connection
    finally:
        connection.abort()
        server.close()


@pytest.mark.parametrize(("pad", "max_frame"), [(0, 16_384), (7, 16_384), (255, 1_000), (0, 300)])
async def test_replies_framed_by_the_h2_library_read_the_same(pad: int, max_frame: int) -> None:
    async for connection in connected(pad, max_frame):
        # Requests within the server's first windows; replies up to 150 KB.
        messages = [bytes(range(256)) * n for n in (0, 1, 40, 200)]
        futures = []
        for message in messages:
            started = started_call(connection, "/test.Echo/Echo", (("x-test", "yes"),), 5.0, message)
            assert started is not None
            futures.append(started[1])
        replies = await asyncio.wait_for(asyncio.gather(*futures), 10 * TIME_UNIT)
        assert [bytes(reply) for reply in replies] == [message[::-1] * 3 for message in messages]
