"""The proxy's own gRPC-over-HTTP/2 client (lipsync_proxy.http2): byte by byte against frames built here,
fed the way the event loop feeds a BufferedProtocol, and against a real gRPC server."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, cast

import grpc
import hpack
import pytest
import uvloop

from lipsync_common.waiting import TIME_UNIT
from lipsync_proxy import http2
from lipsync_proxy.http2 import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    DIRECT_MIN,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    INTERNAL_ERROR,
    MAX_MESSAGE,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SCRATCH,
    SCRATCH_READ,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    WINDOW_UPDATE,
    Answered,
    CallError,
    Event,
    Failed,
    Http2Client,
    Http2Connection,
    frame_header,
    grpc_timeout,
    keeps_table,
    literal,
    request_headers,
)

ECHO = "/test.Echo/Echo"
FAIL = "/test.Echo/Fail"
SLOW = "/test.Echo/Slow"
FAIL_DETAILS = "no such frame: ü"

# --- byte level: a fake transport, and frames as a server writes them ---------------------------------


@dataclass(frozen=True)
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= 9, "a partial frame header"
        word, flags, stream_id = struct.unpack_from(">IBI", data, offset)
        length = word >> 8
        payload = data[offset + 9 : offset + 9 + length]
        assert len(payload) == length, "a partial frame"
        frames.append(Frame(word & 0xFF, flags, stream_id, payload))
        offset += 9 + length
    return frames


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return frame_header(len(payload), kind, flags, stream_id) + payload


def prefixed(message: bytes, compressed: int = 0) -> bytes:
    return bytes((compressed,)) + len(message).to_bytes(4, "big") + message


class FakeTransport:
    """What the connection writes, and whether it closed its transport."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        for part in parts:
            self.written += part

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True


class Harness:
    """An Http2Connection on a fake transport, fed as uvloop feeds a BufferedProtocol: the kernel writes
    into the buffer get_buffer gives, which the loop holds until buffer_updated returns."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.lost: list[Http2Connection] = []
        self.connection = Http2Connection("host:1", on_closed=self.lost.append)
        self.connection.connection_made(cast(asyncio.BaseTransport, self.transport))
        self._seen = 0
        #: The objects reads landed in, by id: the scratch buffer, or replies' messages.
        self.targets: dict[int, object] = {}

    def sent(self) -> list[Frame]:
        """The frames written since the last look (the preface skipped)."""
        data = bytes(self.transport.written[self._seen :])
        if self._seen == 0:
            assert data.startswith(PREFACE)
            data = data[len(PREFACE) :]
        self._seen = len(self.transport.written)
        return parse_frames(data)

    def feed(self, data: bytes, chunk: int | None = None) -> None:
        """`data` as arriving `chunk` bytes at a time (all at once when None)."""
        step = chunk or max(1, len(data))
        whole = memoryview(data)
        for start in range(0, len(data), step):
            piece = whole[start : start + step]
            while piece:
                buf = self.connection.get_buffer(-1)
                n = min(len(buf), len(piece))
                assert n > 0, "get_buffer gave an empty buffer"
                buf[:n] = piece[:n]
                self.targets[id(buf.obj)] = buf.obj
                self.connection.buffer_updated(n)
                buf.release()
                piece = piece[n:]

    def start(
        self,
        message: bytes = b"request",
        method: str = ECHO,
        metadata: Sequence[tuple[str, str]] = (),
        timeout_s: float = 5.0,
    ) -> tuple[int, asyncio.Future[bytearray]]:
        started = started_call(self.connection, method, metadata, timeout_s, message)
        assert started is not None
        return started

    def wrote_into(self, target: object) -> bool:
        """Whether some read landed straight in `target`."""
        return any(obj is target for obj in self.targets.values())


class Server:
    """Frames as a gRPC server writes them: its header blocks come from one HPACK encoder, used in order."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def settings(self, *pairs: tuple[int, int]) -> bytes:
        return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", key, value) for key, value in pairs))

    def headers(
        self,
        stream_id: int,
        fields: Sequence[tuple[str, str]],
        *,
        end: bool = False,
        pad: int | None = None,
        continued: bool = False,
        priority: bool = False,
    ) -> bytes:
        block = self.encoder.encode(fields)
        flags = END_STREAM if end else 0
        before, after = b"", b""
        if pad is not None:
            flags |= PADDED
            before, after = bytes((pad,)), b"\xee" * pad
        if priority:
            flags |= PRIORITY_FLAG
            before += struct.pack(">IB", 0, 15)
        if continued:
            half = len(block) // 2
            return frame(HEADERS, flags, stream_id, before + block[:half] + after) + frame(
                CONTINUATION, END_HEADERS, stream_id, block[half:]
            )
        return frame(HEADERS, flags | END_HEADERS, stream_id, before + block + after)

    def data(self, stream_id: int, payload: bytes, *, end: bool = False, pad: int | None = None) -> bytes:
        flags = END_STREAM if end else 0
        if pad is not None:
            flags |= PADDED
            payload = bytes((pad,)) + payload + b"\xee" * pad
        return frame(DATA, flags, stream_id, payload)

    def response(self, stream_id: int, **options: Any) -> bytes:
        return self.headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")], **options)

    def trailers(self, stream_id: int, status: int = 0, message: str | None = None, **options: Any) -> bytes:
        fields = [("grpc-status", str(status))] + ([("grpc-message", message)] if message is not None else [])
        return self.headers(stream_id, fields, end=True, **options)

    def reply(
        self,
        stream_id: int,
        message: bytes,
        *,
        cuts: Sequence[int] = (),
        pad: int | None = None,
        continued: bool = False,
        priority: bool = False,
    ) -> bytes:
        """Response headers, the prefixed message in DATA frames cut at `cuts`, OK trailers."""
        payload = prefixed(message)
        bounds = [0, *cuts, len(payload)]
        datas = [self.data(stream_id, payload[a:b], pad=pad) for a, b in itertools.pairwise(bounds)]
        return b"".join(
            (
                self.response(stream_id, pad=pad, continued=continued, priority=priority),
                *datas,
                self.trailers(stream_id, pad=pad, continued=continued),
            )
        )

    def rst_stream(self, stream_id: int, code: int) -> bytes:
        return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))

    def goaway(self, last_stream_id: int, code: int = 0, debug: bytes = b"") -> bytes:
        return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code) + debug)


def started_call(
    connection: Http2Connection,
    method: str,
    metadata: Sequence[tuple[str, str]],
    timeout_s: float,
    message: bytes,
) -> tuple[int, asyncio.Future[bytearray]] | None:
    """`connection.call`, its outcome set on a future to await: the stream id and the future."""
    future: asyncio.Future[bytearray] = asyncio.get_running_loop().create_future()

    def done(outcome: bytearray | CallError) -> None:
        if isinstance(outcome, CallError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    stream_id = connection.call(method, metadata, timeout_s, message, done)
    return None if stream_id is None else (stream_id, future)


def failure(future: asyncio.Future[bytearray]) -> CallError:
    assert future.done(), "the call is still open"
    error = future.exception()
    assert isinstance(error, CallError), error
    return error


def decoded(decoder: hpack.Decoder, block: bytes) -> list[tuple[str, str]]:
    return [(str(name), str(value)) for name, value in decoder.decode(block)]


def some_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def fed(client: Http2Client, data: bytes) -> list[Event]:
    """The events of `data` arriving at `client` all at once, written where it asks."""
    view = memoryview(data)
    while view:
        buffer = client.get_buffer()
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        client.buffer_updated(n)
        view = view[n:]
    return client.events_received()


def test_the_client_turns_the_bytes_it_is_fed_into_events_and_queues_what_it_sends() -> None:
    client = Http2Client("host:1")
    assert b"".join(client.data_to_send()).startswith(PREFACE)
    assert client.call(ECHO, (), 5.0, b"request") == 1
    assert [f.kind for f in parse_frames(b"".join(client.data_to_send()))] == [HEADERS, DATA]
    server = Server()
    assert fed(client, server.settings()) == []
    assert [(f.kind, f.flags) for f in parse_frames(b"".join(client.data_to_send()))] == [(SETTINGS, ACK)]
    assert fed(client, server.reply(1, b"answer", cuts=[3])) == [Answered(1, bytearray(b"answer"))]
    assert client.data_to_send() == []
    assert client.events_received() == []
    assert not client.should_close


def test_a_server_that_breaks_http2_fails_every_call_and_the_client_asks_to_close() -> None:
    client = Http2Client("host:1")
    assert client.call(ECHO, (), 5.0, b"one") == 1
    assert client.call(ECHO, (), 5.0, b"two") == 3
    client.data_to_send()
    events = fed(client, Server().settings((SETTINGS_MAX_FRAME_SIZE, 0)))
    assert [event.stream_id for event in events] == [1, 3]
    assert all(isinstance(event, Failed) and event.error.code is grpc.StatusCode.INTERNAL for event in events)
    assert [f.kind for f in parse_frames(b"".join(client.data_to_send()))] == [GOAWAY]
    assert client.should_close
    assert client.call(ECHO, (), 5.0, b"three") is None


async def test_the_connection_opens_with_the_preface_its_settings_and_a_window_update() -> None:
    harness = Harness()
    assert bytes(harness.transport.written).startswith(PREFACE)
    settings, window = harness.sent()
    assert (settings.kind, settings.flags, settings.stream_id) == (SETTINGS, 0, 0)
    pairs = dict(struct.iter_unpack(">HI", settings.payload))
    assert pairs == {
        SETTINGS_ENABLE_PUSH: 0,
        SETTINGS_INITIAL_WINDOW_SIZE: 2**31 - 1,
        SETTINGS_MAX_FRAME_SIZE: 2**24 - 1,
    }
    assert (window.kind, window.stream_id) == (WINDOW_UPDATE, 0)
    # The connection's window goes from HTTP/2's 65,535 to the largest there is.
    assert struct.unpack(">I", window.payload)[0] + 65_535 == MAX_WINDOW
    assert not harness.transport.closed


async def test_a_call_sends_one_headers_frame_and_its_prefixed_message_on_odd_streams() -> None:
    harness = Harness()
    harness.sent()
    decoder = hpack.Decoder()
    for expected_id, message in zip((1, 3, 5), (b"hello", b"", b"x" * 300), strict=True):
        stream_id, _ = harness.start(
            message, metadata=[("x-request-id", "abc"), ("x-model", "demo")], timeout_s=1.5
        )
        assert stream_id == expected_id
        headers, data = harness.sent()
        assert (headers.kind, headers.flags, headers.stream_id) == (HEADERS, END_HEADERS, stream_id)
        assert decoded(decoder, headers.payload) == [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", ECHO),
            (":authority", "host:1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "lipsync-proxy"),
            ("grpc-timeout", "1500m"),
            ("x-request-id", "abc"),
            ("x-model", "demo"),
        ]
        assert (data.kind, data.flags, data.stream_id) == (DATA, END_STREAM, stream_id)
        assert data.payload == b"\x00" + len(message).to_bytes(4, "big") + message


async def test_a_request_larger_than_the_servers_frames_goes_in_several_data_frames() -> None:
    harness = Harness()
    harness.sent()
    message = some_bytes(40_000)
    stream_id, _ = harness.start(message)
    headers, *datas = harness.sent()
    assert headers.kind == HEADERS
    # HTTP/2's default SETTINGS_MAX_FRAME_SIZE, as the server sent none.
    assert [len(d.payload) for d in datas] == [16_384, 16_384, 40_005 - 2 * 16_384]
    assert [(d.kind, d.stream_id, d.flags) for d in datas] == [
        (DATA, stream_id, 0),
        (DATA, stream_id, 0),
        (DATA, stream_id, END_STREAM),
    ]
    assert b"".join(d.payload for d in datas) == prefixed(message)


async def test_a_request_goes_in_frames_of_the_size_the_servers_settings_allow() -> None:
    harness = Harness()
    harness.feed(
        Server().settings((SETTINGS_MAX_FRAME_SIZE, 40_000), (SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW))
        + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1_000_000))
    )
    harness.sent()
    message = some_bytes(100_000)
    harness.start(message)
    _, *datas = harness.sent()
    assert [len(d.payload) for d in datas] == [40_000, 40_000, 20_005]
    assert b"".join(d.payload for d in datas) == prefixed(message)


def test_the_static_header_block_decodes_to_the_calls_fields() -> None:
    block = request_headers("/a.B/C", "backend:50051", "agent") + literal(b"x-k", b"v")
    assert decoded(hpack.Decoder(), block) == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/a.B/C"),
        (":authority", "backend:50051"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "agent"),
        ("x-k", "v"),
    ]
    # A value longer than a one-byte HPACK length still decodes.
    assert decoded(hpack.Decoder(), literal(b"x-long", b"v" * 1000)) == [("x-long", "v" * 1000)]


def test_only_blocks_of_indexed_fields_and_literals_without_indexing_keep_the_hpack_table() -> None:
    encoder = hpack.Encoder()
    first = encoder.encode([("grpc-status", "0")])  # a literal with incremental indexing
    again = encoder.encode([("grpc-status", "0")])  # now indexed
    assert (first[0] & 0xC0, again) == (0x40, b"\xbe")
    assert not keeps_table(first)
    assert keeps_table(again)
    assert keeps_table(b"\x88" + again + literal(b"grpc-message", b"") + literal(31, b"x" * 200))
    assert keeps_table(encoder.encode([hpack.NeverIndexedHeaderTuple("x-secret", "1")]))
    assert keeps_table(b"")
    assert not keeps_table(b"\x3f\xe1\x1f")  # a table size update (4096)
    assert not keeps_table(literal(b"x-long", b"v" * 200)[:-1])  # cut short
    assert not keeps_table(b"\xff")  # an index cut short


async def test_a_header_block_seen_before_is_read_anew_once_the_table_has_changed() -> None:
    # A server repeats the same indexed blocks; one that adds to its table moves the indexes, and the
    # same bytes then name other fields: here `grpc-status 5` where they named `grpc-status 0`.
    server = Server()
    harness = Harness()

    def ended(status: int) -> asyncio.Future[bytearray]:
        stream_id, future = harness.start()
        data = server.data(stream_id, prefixed(b"m"))
        harness.feed(server.response(stream_id) + data + server.trailers(stream_id, status))
        return future

    for _ in range(3):
        assert ended(0).result() == b"m"
    for _ in range(3):
        assert failure(ended(5)).code is grpc.StatusCode.NOT_FOUND
    assert ended(0).result() == b"m"


# Replies of every shape: the same bytes read the same however the kernel splits them.
SHAPES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "small": (some_bytes(50), {}),
    "empty": (b"", {}),
    "larger than DIRECT_MIN": (some_bytes(100_000), {}),
    "in several DATA frames, the prefix cut": (some_bytes(100_000), {"cuts": [3, 5, 5_000, 60_000]}),
    "padded": (some_bytes(100_000), {"pad": 200}),
    "padded with no padding": (some_bytes(9_000), {"pad": 0}),
    "with a continued header block": (some_bytes(10_000), {"continued": True}),
    "with priority in its headers": (some_bytes(300), {"priority": True, "pad": 3}),
}
CHUNKS = (1, 2, 3, 7, 4096, None)


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_a_reply_split_at_every_byte_reads_the_same(shape: str) -> None:
    message, options = SHAPES[shape]
    wire = Server().settings() + Server().reply(1, message, **options)
    for chunk in CHUNKS:
        harness = Harness()
        _, future = harness.start()
        harness.feed(wire, chunk)
        assert future.done(), f"chunk {chunk}"
        reply = future.result()
        assert reply == message, f"chunk {chunk}"
        if len(message) >= SCRATCH_READ + DIRECT_MIN:
            # The kernel wrote straight into the reply's message.
            assert harness.wrote_into(reply), f"chunk {chunk}"
        assert not harness.connection._client._streams
        assert not harness.transport.closed


@pytest.mark.parametrize("size", [40, 6_000])
async def test_a_reply_cut_in_two_anywhere_reads_the_same(size: int) -> None:
    message = some_bytes(size)
    wire = Server().reply(1, message, cuts=[2, 1_000] if size > 1_000 else [2])
    for cut in range(len(wire) + 1):
        harness = Harness()
        _, future = harness.start()
        harness.feed(wire[:cut])
        assert not future.done() or cut == len(wire)
        harness.feed(wire[cut:])
        assert future.result() == message, f"cut at {cut}"


async def test_replies_whose_frames_interleave_each_reach_their_own_call() -> None:
    server = Server()
    messages = {1: some_bytes(70_000, 1), 3: some_bytes(50, 3), 5: some_bytes(30_000, 5)}
    harness = Harness()
    calls = {stream_id: harness.start()[1] for stream_id in messages}
    assert list(calls) == [1, 3, 5]
    heads = [server.response(stream_id) for stream_id in messages]
    pieces = {stream_id: prefixed(message) for stream_id, message in messages.items()}
    datas = []
    for offset in range(0, 75_000, 10_000):
        for stream_id, payload in pieces.items():
            if offset < len(payload):
                datas.append(server.data(stream_id, payload[offset : offset + 10_000]))
    tails = [server.trailers(stream_id) for stream_id in (5, 1, 3)]
    wire = b"".join((*heads, *datas, *tails))
    for chunk in CHUNKS:
        # A fresh encoder for every connection: the bytes are the same.
        again = Harness()
        again_calls = [again.start()[1] for _ in messages]
        again.feed(wire, chunk)
        assert [bytes(call.result()) for call in again_calls] == list(messages.values()), f"chunk {chunk}"
    harness.feed(wire)
    assert {stream_id: call.result() for stream_id, call in calls.items()} == messages


async def test_the_servers_settings_get_an_ack_and_a_ping_its_own_bytes_back() -> None:
    harness = Harness()
    harness.sent()
    harness.feed(Server().settings((SETTINGS_MAX_CONCURRENT_STREAMS, 100)))
    assert harness.sent() == [Frame(SETTINGS, ACK, 0, b"")]
    # The server's ACK of ours is not acknowledged.
    harness.feed(frame(SETTINGS, ACK, 0))
    assert harness.sent() == []
    harness.feed(frame(PING, 0, 0, b"12345678"), chunk=3)
    assert harness.sent() == [Frame(PING, ACK, 0, b"12345678")]
    harness.feed(frame(PING, ACK, 0, b"abcdefgh"))
    assert harness.sent() == []


async def test_priority_and_unknown_frames_are_ignored() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    message = some_bytes(20_000)
    wire = b"".join(
        (
            frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 200)),
            frame(0xFA, 0xFF, 0, b"unknown on the connection"),
            server.response(1),
            frame(0x42, 0, 1, b"unknown on the stream"),
            server.data(1, prefixed(message)),
            frame(PRIORITY, 0, 7, struct.pack(">IB", 0, 1)),
            server.trailers(1),
        )
    )
    harness.feed(wire, chunk=5)
    assert future.result() == message
    assert [f.kind for f in harness.sent()] == [SETTINGS, WINDOW_UPDATE, HEADERS, DATA]
    assert not harness.transport.closed


async def test_a_frame_larger_than_the_scratch_buffer_is_read_and_skipped() -> None:
    harness = Harness()
    _, future = harness.start()
    harness.feed(frame(0xFA, 0, 0, some_bytes(SCRATCH + 40_000)))
    harness.feed(Server().reply(1, b"after"))
    assert future.result() == b"after"


@pytest.mark.parametrize("trailers_only", [False, True], ids=["in trailers", "trailers only"])
async def test_an_error_status_fails_the_call_with_its_percent_decoded_message(trailers_only: bool) -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    if trailers_only:
        wire = server.headers(
            1,
            [
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "3"),
                ("grpc-message", "bad%20frame"),
            ],
            end=True,
        )
    else:
        wire = server.response(1) + server.trailers(1, 3, "bad%20frame")
    harness.feed(wire)
    error = failure(future)
    assert (error.code, error.details, error.retriable) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad frame",
        False,
    )
    assert not harness.connection._client._streams
    # The connection carries on.
    _, next_call = harness.start()
    harness.feed(server.reply(3, b"ok"))
    assert next_call.result() == b"ok"


async def test_an_unknown_grpc_status_is_unknown() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.feed(server.response(1) + server.trailers(1, 99, "odd"))
    assert failure(future).code is grpc.StatusCode.UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("503", grpc.StatusCode.UNAVAILABLE),
        ("404", grpc.StatusCode.UNIMPLEMENTED),
        ("401", grpc.StatusCode.UNAUTHENTICATED),
        ("500", grpc.StatusCode.UNKNOWN),
    ],
)
async def test_an_http_error_status_fails_the_call(status: str, code: grpc.StatusCode) -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.feed(server.headers(1, [(":status", status), ("content-type", "text/plain")]))
    error = failure(future)
    assert (error.code, error.retriable) == (code, False)
    assert status in error.details
    # The body and end of the failed stream are read and ignored.
    harness.feed(server.data(1, b"<html>down</html>", end=True))
    _, next_call = harness.start()
    harness.feed(server.reply(3, b"ok"))
    assert next_call.result() == b"ok"


@pytest.mark.parametrize(
    ("code", "status", "retriable"),
    [
        (REFUSED_STREAM, grpc.StatusCode.UNAVAILABLE, True),
        (CANCEL, grpc.StatusCode.CANCELLED, False),
        (INTERNAL_ERROR, grpc.StatusCode.INTERNAL, False),
    ],
)
async def test_a_reset_stream_fails_its_call_retriable_only_when_refused(
    code: int, status: grpc.StatusCode, retriable: bool
) -> None:
    server = Server()
    harness = Harness()
    _, first = harness.start()
    _, second = harness.start()
    harness.feed(server.rst_stream(3, code))
    error = failure(second)
    assert (error.code, error.retriable) == (status, retriable)
    assert not first.done()
    harness.feed(server.reply(1, b"one"))
    assert first.result() == b"one"


async def test_a_goaway_fails_the_calls_it_never_started_and_lets_the_others_finish() -> None:
    server = Server()
    harness = Harness()
    _, first = harness.start(b"one")
    _, second = harness.start(b"three")
    harness.feed(server.settings() + server.goaway(1, 0, b"shutting down"))
    error = failure(second)
    assert (error.code, error.retriable) == (grpc.StatusCode.UNAVAILABLE, True)
    assert "shutting down" in error.details
    assert not first.done()
    assert harness.connection.closing
    assert started_call(harness.connection, ECHO, (), 1.0, b"new") is None
    assert not harness.transport.closed
    harness.feed(server.reply(1, b"one!"))
    assert first.result() == b"one!"
    assert harness.transport.closed


async def test_a_goaway_with_nothing_open_closes_the_connection() -> None:
    harness = Harness()
    harness.feed(Server().goaway(MAX_WINDOW))
    assert harness.connection.closing
    assert harness.transport.closed


async def test_a_lost_connection_fails_open_calls_retriable_only_before_their_headers() -> None:
    server = Server()
    harness = Harness()
    _, answering = harness.start()
    _, waiting = harness.start()
    harness.feed(server.response(1) + server.data(1, prefixed(b"half")[:6]))
    harness.connection.connection_lost(None)
    answering_error, waiting_error = failure(answering), failure(waiting)
    assert (answering_error.code, answering_error.retriable) == (grpc.StatusCode.UNAVAILABLE, False)
    assert (waiting_error.code, waiting_error.retriable) == (grpc.StatusCode.UNAVAILABLE, True)
    assert harness.connection.closing
    assert harness.connection.closed.done()
    assert harness.lost == [harness.connection]
    assert started_call(harness.connection, ECHO, (), 1.0, b"new") is None


async def test_a_cancelled_call_sends_rst_stream_cancel_and_its_late_frames_are_ignored() -> None:
    server = Server()
    harness = Harness()
    harness.sent()
    stream_id, future = harness.start()
    harness.sent()
    harness.connection.cancel(stream_id)
    assert harness.sent() == [Frame(RST_STREAM, 0, stream_id, struct.pack(">I", CANCEL))]
    # Giving up an unknown or finished call writes nothing.
    harness.connection.cancel(stream_id)
    harness.connection.cancel(99)
    assert harness.sent() == []
    # The late reply (its header blocks still update the HPACK table the next reply's refer to).
    late = some_bytes(100_000)
    harness.feed(server.reply(stream_id, late), chunk=4096)
    # Read into the scratch buffer alone: no message was made for it, and no outcome given.
    assert len(harness.targets) == 1
    assert not future.done()
    next_id, next_call = harness.start()
    harness.feed(server.reply(next_id, b"next"))
    assert next_call.result() == b"next"
    assert not harness.transport.closed


async def test_a_call_cancelled_midway_through_its_reply_reads_the_rest_and_ignores_it() -> None:
    server = Server()
    harness = Harness()
    stream_id, future = harness.start()
    message = some_bytes(100_000)
    wire = server.reply(stream_id, message)
    harness.feed(wire[:30_000], chunk=4096)
    harness.connection.cancel(stream_id)
    harness.feed(wire[30_000:], chunk=4096)
    assert not future.done()
    next_id, next_call = harness.start()
    harness.feed(server.reply(next_id, b"next"))
    assert next_call.result() == b"next"


async def test_a_compressed_reply_fails_internal() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.feed(server.response(1) + server.data(1, prefixed(b"gzipped", compressed=1)) + server.trailers(1))
    error = failure(future)
    assert (error.code, error.retriable) == (grpc.StatusCode.INTERNAL, False)


async def test_a_reply_announced_larger_than_max_message_fails_resource_exhausted() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    announced = b"\x00" + (MAX_MESSAGE + 1).to_bytes(4, "big")
    harness.feed(server.response(1) + server.data(1, announced + b"some of it"))
    error = failure(future)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_MESSAGE) in error.details
    # The rest of the stream is read and ignored.
    harness.feed(server.data(1, some_bytes(50_000)) + server.trailers(1))
    _, next_call = harness.start()
    harness.feed(server.reply(3, b"ok"))
    assert next_call.result() == b"ok"


async def test_a_reply_of_max_message_is_taken() -> None:
    # A reply of exactly the limit is allowed: announced, allocated, and (direct) read.
    server = Server()
    harness = Harness()
    _, future = harness.start()
    message = b"\x5a" * MAX_MESSAGE
    harness.feed(server.reply(1, message, cuts=range(1 << 23, MAX_MESSAGE, 1 << 23)))
    assert future.result() == message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="no DATA"),
        pytest.param(prefixed(b"message")[:3], id="a partial prefix"),
        pytest.param(prefixed(b"message")[:8], id="a partial message"),
    ],
)
async def test_ok_trailers_without_a_whole_message_fail_internal(body: bytes) -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.feed(server.response(1) + (server.data(1, body) if body else b"") + server.trailers(1))
    error = failure(future)
    assert (error.code, error.retriable) == (grpc.StatusCode.INTERNAL, False)


async def test_two_messages_in_a_reply_fail_internal() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.feed(
        server.response(1) + server.data(1, prefixed(b"one") + prefixed(b"two")) + server.trailers(1)
    )
    assert failure(future).code is grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(lambda s: s.data(1, prefixed(b"x"), end=True), id="DATA ending the stream"),
        pytest.param(lambda s: s.response(1, end=True), id="headers ending the stream"),
        pytest.param(lambda s: s.data(1, prefixed(b"x")), id="DATA before the headers"),
    ],
)
async def test_a_reply_that_breaks_grpc_fails_internal(wire: Callable[[Server], bytes]) -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.feed(wire(server))
    assert failure(future).code is grpc.StatusCode.INTERNAL


async def test_a_push_promise_fails_every_call_and_sends_goaway() -> None:
    server = Server()
    harness = Harness()
    harness.sent()
    _, first = harness.start()
    _, second = harness.start()
    harness.sent()
    harness.feed(server.response(1) + frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + b"\x82"))
    for future in (first, second):
        error = failure(future)
        assert (error.code, error.retriable) == (grpc.StatusCode.INTERNAL, False)
        assert "PUSH_PROMISE" in error.details
    goaway, *_ = harness.sent()
    assert (goaway.kind, goaway.stream_id) == (GOAWAY, 0)
    assert struct.unpack(">II", goaway.payload) == (0, PROTOCOL_ERROR)
    assert harness.transport.closed
    assert harness.connection.closing


async def test_a_broken_header_block_is_a_protocol_error() -> None:
    harness = Harness()
    harness.sent()
    _, future = harness.start()
    harness.sent()
    # Index 200 is in neither HPACK table.
    harness.feed(frame(HEADERS, END_HEADERS, 1, b"\xff\x49"))
    assert failure(future).code is grpc.StatusCode.INTERNAL
    assert [f.kind for f in harness.sent()] == [GOAWAY]
    assert harness.transport.closed


@pytest.mark.parametrize(
    ("flags", "payload"),
    [
        (END_HEADERS | PADDED, b""),
        (END_HEADERS | PADDED, b"\x05\x82"),
        (END_HEADERS | PRIORITY_FLAG, b"\x00\x00"),
    ],
    ids=["padded and empty", "padding past the end", "priority past the end"],
)
async def test_a_headers_frame_too_short_for_its_flags_is_a_protocol_error(
    flags: int, payload: bytes
) -> None:
    harness = Harness()
    _, future = harness.start()
    harness.sent()
    harness.feed(frame(HEADERS, flags, 1, payload))
    assert failure(future).code is grpc.StatusCode.INTERNAL
    assert [f.kind for f in harness.sent()] == [GOAWAY]
    assert harness.transport.closed


async def test_a_frame_inside_a_header_block_is_a_protocol_error() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    block = server.encoder.encode([(":status", "200")])
    harness.feed(frame(HEADERS, 0, 1, block) + frame(PING, 0, 0, b"12345678"))
    assert failure(future).code is grpc.StatusCode.INTERNAL
    assert harness.transport.closed


async def test_a_call_that_would_not_fit_the_servers_windows_is_not_sent() -> None:
    server = Server()
    harness = Harness()
    harness.feed(server.settings((SETTINGS_INITIAL_WINDOW_SIZE, 10)))
    harness.sent()
    assert started_call(harness.connection, ECHO, (), 1.0, b"m" * 100) is None
    assert harness.sent() == []
    assert started_call(harness.connection, ECHO, (), 1.0, b"m" * 5) is not None
    # The connection's window: 65,535 in all until the server adds to it.
    harness = Harness()
    harness.feed(server.settings((SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)))
    harness.sent()
    harness.start(b"m" * 60_000)
    harness.sent()
    assert started_call(harness.connection, ECHO, (), 1.0, b"m" * 10_000) is None
    assert harness.sent() == []
    harness.feed(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 100_000)))
    assert started_call(harness.connection, ECHO, (), 1.0, b"m" * 10_000) is not None


async def test_no_more_calls_than_the_server_allows_are_open_at_once() -> None:
    server = Server()
    harness = Harness()
    harness.feed(server.settings((SETTINGS_MAX_CONCURRENT_STREAMS, 1)))
    harness.start()
    assert started_call(harness.connection, ECHO, (), 1.0, b"second") is None
    harness.feed(server.reply(1, b"first"))
    assert started_call(harness.connection, ECHO, (), 1.0, b"second") is not None


async def test_close_takes_no_new_calls_and_closes_once_the_open_ones_are_answered() -> None:
    server = Server()
    harness = Harness()
    _, future = harness.start()
    harness.connection.close()
    assert started_call(harness.connection, ECHO, (), 1.0, b"new") is None
    assert not harness.transport.closed
    harness.feed(server.reply(1, b"done"))
    assert future.result() == b"done"
    assert harness.transport.closed


async def test_giving_up_the_last_call_of_a_closing_connection_closes_it() -> None:
    harness = Harness()
    stream_id, _ = harness.start()
    harness.feed(Server().goaway(stream_id))
    assert not harness.transport.closed
    harness.connection.cancel(stream_id)
    assert harness.transport.closed


async def test_a_connection_out_of_stream_ids_takes_no_more_calls_and_closes() -> None:
    harness = Harness()
    harness.connection._client._next_id = MAX_WINDOW - 2
    last_id, future = harness.start()
    assert last_id == MAX_WINDOW - 2  # the last odd id under 2**31 - 1 it takes
    assert started_call(harness.connection, ECHO, (), 1.0, b"no id left") is None
    assert harness.connection.closing
    harness.feed(Server().reply(last_id, b"last"))
    assert future.result() == b"last"
    assert harness.transport.closed


@pytest.mark.parametrize("pad", [None, 7, 0], ids=["unpadded", "padded", "padded with no padding"])
async def test_every_data_byte_received_is_given_back_to_the_servers_window(
    pad: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http2, "WINDOW_REFILL", 50_000)
    server = Server()
    harness = Harness()
    harness.sent()
    _, future = harness.start()
    message = some_bytes(300_000)
    wire = server.reply(1, message, cuts=range(10_000, 300_000, 10_000), pad=pad)
    harness.feed(wire, chunk=4096)
    assert future.result() == message
    received = sum(len(f.payload) for f in parse_frames(wire) if f.kind == DATA)
    given_back = [f for f in harness.sent() if f.kind == WINDOW_UPDATE]
    assert all(f.stream_id == 0 for f in given_back)
    increments = [struct.unpack(">I", f.payload)[0] for f in given_back]
    assert all(increment >= 50_000 for increment in increments)
    # What is not given back yet is less than the refill threshold.
    assert 0 <= received - sum(increments) < 50_000
    assert received - sum(increments) == harness.connection._client._unacked


@pytest.mark.parametrize(
    "malformed",
    [
        pytest.param(frame(RST_STREAM, 0, 1, b"\x00\x08"), id="a short RST_STREAM"),
        pytest.param(frame(WINDOW_UPDATE, 0, 0, b"\x00\x08"), id="a short WINDOW_UPDATE"),
        pytest.param(frame(GOAWAY, 0, 0, b"\x00\x00\x00\x01"), id="a short GOAWAY"),
        pytest.param(frame(PING, 0, 0, b"1234"), id="a short PING"),
    ],
)
async def test_a_control_frame_of_the_wrong_size_is_a_protocol_error(malformed: bytes) -> None:
    harness = Harness()
    harness.sent()
    _, future = harness.start()
    harness.sent()
    harness.feed(malformed)
    assert failure(future).code is grpc.StatusCode.INTERNAL
    assert [f.kind for f in harness.sent()] == [GOAWAY]
    assert harness.transport.closed


@pytest.mark.parametrize(
    ("seconds", "value"),
    [
        (0.0001, b"1m"),
        (0.001, b"1m"),
        (0.2, b"200m"),
        (1.5, b"1500m"),
        (0.0, b"1m"),
        (-3.0, b"1m"),
        (99_999.999, b"99999999m"),
        (10**6, b"1000000S"),
        (10**12, b"99999999S"),
    ],
)
def test_grpc_timeout_is_at_most_eight_digits_rounded_up(seconds: float, value: bytes) -> None:
    encoded = grpc_timeout(seconds)
    assert encoded == value
    assert len(encoded) <= 9
    assert encoded[:-1].isdigit()
    assert encoded[-1:] in b"mS"


# --- against a real gRPC server ----------------------------------------------------------------------


def echo_reply(request: bytes) -> bytes:
    """`request` is `index:size:...`; its reply is the request over and over, `size` bytes of it."""
    size = int(request.split(b":")[1])
    return (request * (size // len(request) + 1))[:size]


def echo_request(index: int, size: int, filler: int = 0) -> bytes:
    return b"%d:%d:" % (index, size) + bytes(range(256)) * (filler // 256) + b"f" * (filler % 256)


@dataclass
class EchoServer:
    server: grpc.aio.Server
    port: int
    #: The Slow calls whose handler was cancelled, by request.
    cancelled: list[bytes]
    seen_cancelled: asyncio.Event

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    cancelled: list[bytes] = []
    seen_cancelled = asyncio.Event()

    async def echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return echo_reply(request)

    async def fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, FAIL_DETAILS)
        raise AssertionError("abort returned")

    async def slow(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(request)
            seen_cancelled.set()
            raise
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(echo),
                    "Fail": grpc.unary_unary_rpc_method_handler(fail),
                    "Slow": grpc.unary_unary_rpc_method_handler(slow),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield EchoServer(server, port, cancelled, seen_cancelled)
    finally:
        await server.stop(None)


class RecordingClient(Http2Client):
    """An Http2Client that notes the GOAWAYs it gets."""

    def __init__(self, authority: str) -> None:
        super().__init__(authority)
        self.goaways: list[int] = []

    def _goaway(self, last: int, code: int, debug: str) -> None:
        self.goaways.append(code)
        super()._goaway(last, code, debug)


class RecordingConnection(Http2Connection):
    """An Http2Connection whose client notes the GOAWAYs it gets."""

    def __init__(self, authority: str) -> None:
        super().__init__(authority)
        self._client = self.recording = RecordingClient(authority)


@pytest.fixture
async def connection(echo_server: EchoServer) -> AsyncIterator[RecordingConnection]:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: RecordingConnection(echo_server.address), "127.0.0.1", echo_server.port
    )
    try:
        yield protocol
    finally:
        protocol.abort()


async def reply_of(connection: Http2Connection, method: str, request: bytes, timeout_s: float = 5.0) -> bytes:
    started = started_call(connection, method, (("x-test", "yes"),), timeout_s, request)
    assert started is not None
    _, future = started
    return bytes(await asyncio.wait_for(future, 10 * TIME_UNIT))


async def test_sequential_and_concurrent_calls_each_get_their_own_reply(
    connection: RecordingConnection,
) -> None:
    # One after another: requests over one frame (the server's WINDOW_UPDATEs keep its window open),
    # replies from none to 200 KB.
    for index in range(20):
        request = echo_request(index, index * 10_501, filler=(index % 4) * 15_000)
        assert await reply_of(connection, ECHO, request) == echo_reply(request)
    # 50 at once (their requests fit the server's windows together), replies up to 200 KB.
    requests = [echo_request(index, (index * 7919) % 200_001 + 1) for index in range(50)]
    replies = await asyncio.gather(*(reply_of(connection, ECHO, request) for request in requests))
    assert replies == [echo_reply(request) for request in requests]
    assert max(len(reply) for reply in replies) > 190_000
    assert not connection.closing


async def test_a_failed_call_gives_its_status_and_exact_details(connection: RecordingConnection) -> None:
    with pytest.raises(CallError) as caught:
        await reply_of(connection, FAIL, b"frame")
    assert (caught.value.code, caught.value.details, caught.value.retriable) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        FAIL_DETAILS,
        False,
    )
    # The connection carries on.
    assert await reply_of(connection, ECHO, echo_request(1, 3)) == echo_reply(echo_request(1, 3))


async def test_an_unknown_method_is_unimplemented(connection: RecordingConnection) -> None:
    with pytest.raises(CallError) as caught:
        await reply_of(connection, "/test.Echo/Nope", b"")
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED


async def test_a_call_given_up_is_seen_cancelled_by_the_server(
    connection: RecordingConnection, echo_server: EchoServer
) -> None:
    started = started_call(connection, SLOW, (), 30.0, b"give me up")
    assert started is not None
    stream_id, _ = started
    await asyncio.sleep(0.2)  # the handler is running
    assert echo_server.cancelled == []
    connection.cancel(stream_id)
    await asyncio.wait_for(echo_server.seen_cancelled.wait(), 1.0 * TIME_UNIT)
    assert echo_server.cancelled == [b"give me up"]
    assert await reply_of(connection, ECHO, echo_request(2, 2)) == echo_reply(echo_request(2, 2))


async def test_the_grpc_timeout_header_makes_the_server_end_the_call_at_its_deadline(
    connection: RecordingConnection, echo_server: EchoServer
) -> None:
    started = time.monotonic()
    with pytest.raises(CallError) as caught:
        await reply_of(connection, SLOW, b"too slow", timeout_s=0.2)
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.15 < time.monotonic() - started < 2.0 * TIME_UNIT
    await asyncio.wait_for(echo_server.seen_cancelled.wait(), 1.0 * TIME_UNIT)
    assert echo_server.cancelled == [b"too slow"]
    assert await reply_of(connection, ECHO, echo_request(3, 1)) == echo_reply(echo_request(3, 1))


async def test_a_server_that_stops_sends_goaway_and_the_connection_closes(
    connection: RecordingConnection, echo_server: EchoServer
) -> None:
    assert await reply_of(connection, ECHO, echo_request(4, 1)) == echo_reply(echo_request(4, 1))
    await echo_server.server.stop(grace=1)
    await asyncio.wait_for(connection.closed, 5 * TIME_UNIT)
    assert connection.recording.goaways, "no GOAWAY came"
    assert set(connection.recording.goaways) == {NO_ERROR}
    assert connection.closing
    assert started_call(connection, ECHO, (), 1.0, b"late") is None


def test_under_uvloop_concurrent_calls_each_get_their_own_reply() -> None:
    # The proxy runs on uvloop, whose reads into get_buffer's buffers differ from asyncio's; a threaded
    # server keeps grpc's asyncio out of that loop.
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return echo_reply(request)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    async def calls() -> list[bytes]:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: Http2Connection(f"127.0.0.1:{port}"), "127.0.0.1", port
        )
        try:
            requests = [echo_request(index, (index * 7919) % 200_001 + 1) for index in range(50)]
            replies = await asyncio.gather(*(reply_of(protocol, ECHO, request) for request in requests))
            assert replies == [echo_reply(request) for request in requests]
            return replies
        finally:
            protocol.close()

    try:
        replies = uvloop.run(calls())
        assert len(replies) == 50
    finally:
        server.stop(None)


@pytest.mark.parametrize("pad", [None, 3, 0], ids=["unpadded", "padded", "padded with no padding"])
async def test_fed_one_byte_at_a_time_each_data_byte_counts_once_against_the_window(
    pad: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A frame cut right after its header (before a padded frame's pad length) is read again whole.
    monkeypatch.setattr(http2, "WINDOW_REFILL", 5_000)
    server = Server()
    harness = Harness()
    harness.sent()
    _, future = harness.start()
    message = some_bytes(20_000)
    wire = server.reply(1, message, cuts=range(1_000, 20_000, 1_000), pad=pad)
    harness.feed(wire, chunk=1)
    assert future.result() == message
    received = sum(len(f.payload) for f in parse_frames(wire) if f.kind == DATA)
    given_back = sum(struct.unpack(">I", f.payload)[0] for f in harness.sent() if f.kind == WINDOW_UPDATE)
    assert given_back + harness.connection._client._unacked == received


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (SETTINGS_MAX_FRAME_SIZE, 0),
        (SETTINGS_MAX_FRAME_SIZE, 16_383),
        (SETTINGS_MAX_FRAME_SIZE, 1 << 24),
        (SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31),
        (SETTINGS_ENABLE_PUSH, 1),
    ],
)
async def test_a_settings_value_outside_what_http2_allows_is_a_protocol_error(key: int, value: int) -> None:
    server = Server()
    harness = Harness()
    harness.sent()
    _, future = harness.start()
    harness.sent()
    harness.feed(server.settings((key, value)))
    assert failure(future).code is grpc.StatusCode.INTERNAL
    assert [f.kind for f in harness.sent()] == [GOAWAY]
    assert harness.transport.closed
    assert started_call(harness.connection, ECHO, (), 5.0, b"next") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (SETTINGS_MAX_FRAME_SIZE, 16_384),
        (SETTINGS_MAX_FRAME_SIZE, (1 << 24) - 1),
        (SETTINGS_INITIAL_WINDOW_SIZE, 0),
    ],
)
async def test_a_settings_value_at_the_edge_of_what_http2_allows_is_taken(key: int, value: int) -> None:
    harness = Harness()
    harness.sent()
    harness.feed(Server().settings((key, value)))
    assert [(f.kind, f.flags) for f in harness.sent()] == [(SETTINGS, ACK)]
    assert not harness.transport.closed


async def test_a_connection_whose_call_hears_nothing_is_pinged_and_dropped_if_the_ping_goes_unanswered() -> (
    None
):
    harness = Harness()
    harness.sent()
    harness.connection.keepalive()
    assert harness.sent() == []  # idle: not pinged
    _, future = harness.start()
    harness.sent()
    harness.connection.keepalive()
    (ping,) = harness.sent()
    assert (ping.kind, ping.flags, ping.stream_id) == (PING, 0, 0)
    harness.feed(frame(PING, ACK, 0, ping.payload))
    harness.connection.keepalive()  # answered, and something came since
    assert harness.sent() == []
    assert not harness.transport.closed
    harness.connection.keepalive()
    assert [f.kind for f in harness.sent()] == [PING]
    harness.connection.keepalive()  # no answer: taken for dead
    assert harness.transport.aborted
    harness.connection.connection_lost(None)
    assert failure(future).code is grpc.StatusCode.UNAVAILABLE
    assert failure(future).retriable
