"""Unary gRPC calls of serialized messages on an HTTP/2 connection of the proxy's own.

grpc.aio reads every reply on grpc-core's threads, hands it to the event loop through two more
threads and copies it twice on the way (docs/performance.md: a fifth of the proxy's CPU per frame at
64 connections went to grpc-core's threads and their wake-ups). `Http2Client` speaks just what a unary
call of already-serialized messages needs (RFC 9113; gRPC over HTTP/2, PROTOCOL-HTTP2.md), without
I/O: bytes in, events and bytes to send out. It asks where the next bytes go, so that the kernel
writes each reply straight into the buffer of its message: one copy of the bytes instead of three.
`Http2Connection` runs it on the event loop as an `asyncio.BufferedProtocol`, and hands each call's
outcome to a callback of its caller as soon as it is read: a frame is answered in the turn of the
event loop that reads its reply, not in a later one that a future's callbacks or a task wait for.

What it leaves out, because its one caller does not need it: TLS, compression, server push (refused
in its SETTINGS), more than one message per call, and sending more than fits in the peer's windows
(`call` says so by returning None; the caller then tries another connection).
"""

from __future__ import annotations

import asyncio
import ctypes
import struct
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import grpc
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# SETTINGS parameters.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR = 0x0, 0x1, 0x2
REFUSED_STREAM, CANCEL = 0x7, 0x8

USER_AGENT = "lipsync-proxy"
#: The largest window HTTP/2 allows: a reply never waits for a WINDOW_UPDATE of ours.
MAX_WINDOW = (1 << 31) - 1
#: The largest frame HTTP/2 allows: the server sends a reply in as few frames as it likes.
MAX_FRAME = (1 << 24) - 1
#: Refill the connection's receive window once this much of it is used.
WINDOW_REFILL = 1 << 30
#: A reply larger than this fails with RESOURCE_EXHAUSTED (the channel's max_receive_message_length).
MAX_MESSAGE = 64 << 20
#: The kernel writes a DATA payload straight into its message when at least this much of it is due.
DIRECT_MIN = 4096
#: Bytes read at a time outside message payloads (frame headers, control frames, short DATA).
SCRATCH = 1 << 18
#: Bytes read into the scratch buffer at a time.
SCRATCH_READ = 1 << 14
#: The most header blocks whose fields are kept (`Http2Client._decode`).
DECODED_BLOCKS = 16

_HEADER = struct.Struct(">I B I")  # length (24 bits, with the type in the low byte), flags, stream id
_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}
_STATUS = {code.value[0]: code for code in grpc.StatusCode}
#: The payload size of the control frames that have one (RFC 9113 §6).
_CONTROL_SIZES = {RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4, PRIORITY: 5}


#: A new bytearray of a size, its contents left as they are: a reply's buffer, which the reply's bytes
#: fill before anyone reads it (its future gets it only once full). bytearray(size) would first zero a
#: whole batch, ~10 µs for 8 frames of 98 KB. CPython's own constructor, called through ctypes with a
#: prototype of its own (setting `restype` on `ctypes.pythonapi`'s shared one would change it for
#: everyone else in the process).
_uninitialized_bytearray = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)(
    ("PyByteArray_FromStringAndSize", ctypes.pythonapi)
)


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _HEADER.pack(length << 8 | kind, flags, stream_id)


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(text: bytes) -> bytes:
    return _hpack_int(len(text), 7, 0) + text


def literal(name: bytes | int, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing (RFC 7541 §6.2.2), its name given or the
    index of a name in the static table: the encoder keeps no dynamic table, so needs no state."""
    if isinstance(name, int):
        return _hpack_int(name, 4, 0) + _hpack_str(value)
    return b"\x00" + _hpack_str(name) + _hpack_str(value)


def request_headers(path: str, authority: str, user_agent: str) -> bytes:
    """The header block of a unary gRPC call of `path`, without its per-call fields."""
    return b"".join(
        (
            b"\x83",  # :method POST (static index 3)
            b"\x86",  # :scheme http (static index 6)
            literal(4, path.encode()),  # :path
            literal(1, authority.encode()),  # :authority
            literal(31, b"application/grpc"),  # content-type
            literal(b"te", b"trailers"),
            literal(58, user_agent.encode()),  # user-agent
        )
    )


def grpc_timeout(seconds: float) -> bytes:
    """A `grpc-timeout` value: at most 8 digits, milliseconds rounded up."""
    milliseconds = max(1, int(seconds * 1000.0 + 0.999))
    if milliseconds < 100_000_000:
        return b"%dm" % milliseconds
    return b"%dS" % min(99_999_999, int(seconds + 0.999))


def _hpack_int_at(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """The HPACK integer at `pos` (RFC 7541 §5.1) and the position after it; IndexError past the end."""
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value == limit:
        shift = 0
        while True:
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value, pos


def keeps_table(block: bytes) -> bool:
    """Whether decoding a header block leaves the HPACK dynamic table as it is: it holds only indexed
    fields and literals without indexing, and no table size update (RFC 7541 §6)."""
    pos = 0
    try:
        while pos < len(block):
            first = block[pos]
            if first & 0x80:  # indexed
                _, pos = _hpack_int_at(block, pos, 7)
            elif first & 0xE0 == 0:  # a literal without indexing or never indexed
                name, pos = _hpack_int_at(block, pos, 4)
                for _ in range(1 if name else 2):  # the value, after the name when it is not indexed
                    length, pos = _hpack_int_at(block, pos, 7)
                    pos += length
            else:  # a literal with incremental indexing, or a table size update
                return False
    except IndexError:
        return False
    return pos == len(block)


class ProtocolError(Exception):
    """The server broke HTTP/2: the connection is closed, its calls fail."""


class CallError(Exception):
    """A call that did not end in OK. `retriable`: the server never took it (a refused stream, a
    GOAWAY before it, a connection lost before its headers), so it can be sent again elsewhere."""

    def __init__(self, code: grpc.StatusCode, details: str, retriable: bool = False) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.retriable = retriable


class _Stream:
    __slots__ = ("filled", "headers", "message", "prefix")

    def __init__(self) -> None:
        #: Whether the response headers came.
        self.headers = False
        #: The reply's message while it is being read, sized by its gRPC prefix.
        self.message: bytearray | None = None
        self.filled = 0
        #: The 5-byte gRPC message prefix while it is incomplete.
        self.prefix = b""


@dataclass(frozen=True, slots=True)
class Answered:
    """Call `stream_id` ended OK with its one reply `message`."""

    stream_id: int
    message: bytearray


@dataclass(frozen=True, slots=True)
class Failed:
    """Call `stream_id` failed. (A call given up with `cancel` gets no event.)"""

    stream_id: int
    error: CallError


Event = Answered | Failed


class Http2Client:
    """The client side of one HTTP/2 connection carrying unary gRPC calls, without I/O: bytes in
    (`get_buffer`, then `buffer_updated` with how many bytes the reader wrote into it), events out
    (`events_received`), and bytes to send (`data_to_send`), like the WebSocket codec's protocol.

    Reading goes through `get_buffer` so that a reply's DATA can be written straight into its message.
    The caller closes the connection once `should_close` (closing, nothing under way), and calls
    `connection_lost` when the connection is gone.
    """

    def __init__(self, authority: str) -> None:
        """`authority` is the backend's `host:port` (the `:authority` of every call)."""
        self.authority = authority
        #: Each method's header block without its per-call fields.
        self._header_blocks: dict[str, bytes] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        #: No new calls: the server sent GOAWAY, the connection is closing or lost.
        self.closing = False
        self._events: list[Event] = []
        settings = struct.pack(
            ">HIHIHI",
            SETTINGS_ENABLE_PUSH,
            0,
            SETTINGS_INITIAL_WINDOW_SIZE,
            MAX_WINDOW,
            SETTINGS_MAX_FRAME_SIZE,
            MAX_FRAME,
        )
        self._outbound: list[bytes] = [
            PREFACE,
            frame_header(len(settings), SETTINGS, 0, 0),
            settings,
            frame_header(4, WINDOW_UPDATE, 0, 0),
            struct.pack(">I", MAX_WINDOW - 65_535),
        ]
        self._decoder = hpack.Decoder()
        self._decoder.max_allowed_table_size = 1 << 16
        self._decoded: dict[bytes, dict[bytes, bytes]] = {}
        # What the server's SETTINGS allow us to send.
        self._send_window = 65_535
        self._peer_stream_window = 65_535
        self._peer_max_frame = 16_384
        self._peer_max_streams = 1 << 31
        self._unacked = 0
        # Receiving: a scratch buffer, and where the current DATA frame's payload goes.
        self._buffer = bytearray(SCRATCH)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0
        self._data: _Stream | None = None
        self._data_id = 0
        self._data_left = 0
        self._data_pad = 0
        self._data_end = False
        self._direct = False
        self._block = bytearray()
        self._block_id = 0
        self._block_end = False
        # Keepalive: whether anything came since the last look, and whether a PING is unanswered.
        self._heard = False
        self._pinged = False

    # --- out --------------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The bytes to write, in order, since the last call."""
        data, self._outbound = self._outbound, []
        return data

    def events_received(self) -> list[Event]:
        """What happened to the calls since the last call."""
        events, self._events = self._events, []
        return events

    @property
    def should_close(self) -> bool:
        """Closing, with no call under way: the connection can go."""
        return self.closing and not self._streams

    # --- calls ------------------------------------------------------------------------------------

    def call(
        self, method: str, metadata: Sequence[tuple[str, str]], timeout_s: float, message: bytes
    ) -> int | None:
        """Start a unary call of `method` (`/package.Service/Method`) with one serialized request; its
        stream id. `timeout_s` goes to the server as grpc-timeout; the caller keeps the deadline itself
        and `cancel`s the call at it. None when the connection cannot take the call now: closing, out of
        stream ids, or the request does not fit the server's windows or stream limit."""
        size = len(message) + 5
        if self._next_id >= MAX_WINDOW:
            # Out of stream ids: the connection closes once its calls are answered, and is replaced.
            self.closing = True
        if (
            self.closing
            or size > self._send_window
            or size > self._peer_stream_window
            or len(self._streams) >= self._peer_max_streams
        ):
            return None
        stream_id = self._next_id
        self._next_id += 2
        headers = self._header_blocks.get(method)
        if headers is None:
            headers = self._header_blocks[method] = request_headers(method, self.authority, USER_AGENT)
        block = b"".join(
            (
                headers,
                literal(b"grpc-timeout", grpc_timeout(timeout_s)),
                *(literal(name.encode(), value.encode()) for name, value in metadata),
            )
        )
        payload = b"\x00" + len(message).to_bytes(4, "big") + message
        parts = self._outbound
        parts += (frame_header(len(block), HEADERS, END_HEADERS, stream_id), block)
        step = self._peer_max_frame
        for offset in range(0, size, step):
            chunk = payload[offset : offset + step]
            last = offset + step >= size
            parts += (frame_header(len(chunk), DATA, END_STREAM if last else 0, stream_id), chunk)
        self._send_window -= size
        self._streams[stream_id] = _Stream()
        return stream_id

    def cancel(self, stream_id: int) -> None:
        """Give a call up, without an event: the server is told (RST_STREAM CANCEL) and stops working
        on it; what still comes for it is read and ignored."""
        if self._streams.pop(stream_id, None) is not None:
            self._outbound += (frame_header(4, RST_STREAM, 0, stream_id), struct.pack(">I", CANCEL))
            if self._data_id == stream_id:
                self._data = None

    def keepalive(self) -> bool:
        """Called at a fixed interval: a connection with calls under way that has received nothing
        since the last call is sent a PING; True when it has not answered the PING by the next call:
        it is taken for dead, and the caller drops it. An idle connection is not pinged: a gRPC server
        takes frequent pings without data for abuse."""
        if self._pinged:
            return True
        if self._streams and not self._heard:
            self._outbound += (frame_header(8, PING, 0, 0), b"keepaliv")
            self._pinged = True
        self._heard = False
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: every call under way fails, retriable when its headers never came."""
        self.closing = True
        for stream_id, stream in list(self._streams.items()):
            details = f"the connection to the backend was lost: {exc or 'closed'}"
            self._fail(stream_id, grpc.StatusCode.UNAVAILABLE, details, retriable=not stream.headers)

    # --- in ---------------------------------------------------------------------------------------

    def get_buffer(self) -> memoryview:
        """Where the next bytes read go: the rest of a reply's DATA payload when that is long enough,
        else the scratch buffer."""
        stream = self._data
        if self._data_left and self._start == self._end and stream is not None and stream.message is not None:
            due = min(self._data_left, len(stream.message) - stream.filled)
            if due >= DIRECT_MIN:
                self._direct = True
                return memoryview(stream.message)[stream.filled : stream.filled + due]
        if self._end == len(self._buffer):
            self._compact()
        # A short read: what follows a DATA frame's header is best read into its message directly.
        return self._view[self._end : self._end + SCRATCH_READ]

    def buffer_updated(self, nbytes: int) -> None:
        """`nbytes` were written at the start of what `get_buffer` gave."""
        self._heard = True
        if self._direct:
            self._direct = False
            stream = self._data
            assert stream is not None
            stream.filled += nbytes
            self._data_left -= nbytes
            if not self._data_left and not self._data_pad:
                self._data_done()
            return
        self._end += nbytes
        try:
            self._process()
        except (hpack.HPACKError, ProtocolError) as exc:
            self._connection_error(str(exc))

    def _compact(self) -> None:
        pending = self._end - self._start
        if self._start:
            self._buffer[:pending] = self._buffer[self._start : self._end]
        elif pending == len(self._buffer):
            # A control frame larger than the buffer: grow it.
            self._view.release()
            self._buffer.extend(bytes(len(self._buffer)))
            self._view = memoryview(self._buffer)
        self._start = 0
        self._end = pending

    def _process(self) -> None:
        view = self._view
        while True:
            if self._data_left or self._data_pad:
                available = self._end - self._start
                if not available:
                    break
                if self._data_left:
                    n = min(available, self._data_left)
                    self._feed(view[self._start : self._start + n])
                    self._start += n
                    self._data_left -= n
                    available -= n
                if self._data_pad and available:
                    n = min(available, self._data_pad)
                    self._start += n
                    self._data_pad -= n
                if self._data_left or self._data_pad:
                    break
                self._data_done()
                continue
            if self._end - self._start < 9:
                break
            word, flags, stream_id = _HEADER.unpack_from(self._buffer, self._start)
            length, kind = word >> 8, word & 0xFF
            stream_id &= MAX_WINDOW
            if kind == DATA:
                if self._block_id:
                    raise ProtocolError("DATA inside a header block")
                pad = 0
                if flags & PADDED:
                    if self._end - self._start < 10:
                        # The pad length has not come yet: the header is read again with it.
                        break
                    pad = self._buffer[self._start + 9]
                    if pad >= length:
                        raise ProtocolError("DATA padding longer than the frame")
                # The whole payload counts against the window, padding included (RFC 9113 §6.9.1),
                # once: from here on the frame's header is consumed.
                self._window_used(length)
                if flags & PADDED:
                    self._start += 1
                    length -= 1 + pad
                self._start += 9
                self._start_data(stream_id, length, pad, bool(flags & END_STREAM))
                continue
            if self._end - self._start < 9 + length:
                # A frame larger than the buffer grows it at the next get_buffer, once the loop has
                # let go of the buffer it was given.
                break
            payload = view[self._start + 9 : self._start + 9 + length]
            self._start += 9 + length
            self._control(kind, flags, stream_id, payload)
        if self._start == self._end:
            self._start = self._end = 0

    def _window_used(self, length: int) -> None:
        """A DATA payload of `length` bytes came: give the connection's window back in large steps
        (each stream's window is more than any reply needs)."""
        self._unacked += length
        if self._unacked >= WINDOW_REFILL:
            self._outbound += (frame_header(4, WINDOW_UPDATE, 0, 0), struct.pack(">I", self._unacked))
            self._unacked = 0

    def _start_data(self, stream_id: int, length: int, pad: int, end: bool) -> None:
        stream = self._streams.get(stream_id)
        self._data = None if stream is None or not stream.headers else stream
        if stream is not None and not stream.headers:
            self._fail(stream_id, grpc.StatusCode.INTERNAL, "DATA before the response headers")
        self._data_id = stream_id
        self._data_left = length
        self._data_pad = pad
        self._data_end = end
        if not length and not pad:
            self._data_done()

    def _feed(self, chunk: memoryview) -> None:
        """Payload bytes of the current DATA frame, as they come."""
        stream = self._data
        if stream is None:
            return
        while chunk:
            if stream.message is None:
                need = 5 - len(stream.prefix)
                stream.prefix += bytes(chunk[:need])
                chunk = chunk[need:]
                if len(stream.prefix) < 5:
                    return
                compressed, size = stream.prefix[0], int.from_bytes(stream.prefix[1:5], "big")
                if compressed:
                    self._fail(
                        self._data_id, grpc.StatusCode.INTERNAL, "a compressed reply (none was accepted)"
                    )
                    return
                if size > MAX_MESSAGE:
                    self._fail(
                        self._data_id,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"a reply of {size} bytes, over the limit of {MAX_MESSAGE}",
                    )
                    return
                stream.message = _uninitialized_bytearray(None, size)
                continue
            due = len(stream.message) - stream.filled
            if not due:
                self._fail(self._data_id, grpc.StatusCode.INTERNAL, "more than one reply message")
                return
            n = min(due, len(chunk))
            stream.message[stream.filled : stream.filled + n] = chunk[:n]
            stream.filled += n
            chunk = chunk[n:]

    def _data_done(self) -> None:
        if self._data_end:
            stream = self._data
            if stream is not None:
                self._fail(self._data_id, grpc.StatusCode.INTERNAL, "the reply ended without trailers")
        self._data = None

    def _control(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        size = _CONTROL_SIZES.get(kind)
        if (size is not None and len(payload) != size) or (kind == GOAWAY and len(payload) < 8):
            raise ProtocolError(f"a frame of type {kind} with {len(payload)} bytes")
        if kind == SETTINGS and len(payload) % 6:
            raise ProtocolError(f"SETTINGS of {len(payload)} bytes, not a multiple of 6")
        if kind in (HEADERS, CONTINUATION):
            self._header_fragment(kind, flags, stream_id, payload)
        elif self._block_id:
            raise ProtocolError("a frame inside a header block")
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if flags & ACK:
                self._pinged = False
            else:
                self._outbound += (frame_header(8, PING, ACK, 0), bytes(payload))
        elif kind == WINDOW_UPDATE:
            if stream_id == 0:
                self._send_window += struct.unpack_from(">I", payload)[0] & MAX_WINDOW
        elif kind == RST_STREAM:
            (code,) = struct.unpack_from(">I", payload)
            self._reset(stream_id, code)
        elif kind == GOAWAY:
            last, code = struct.unpack_from(">II", payload)
            self._goaway(last & MAX_WINDOW, code, bytes(payload[8:]).decode(errors="replace"))
        elif kind == PUSH_PROMISE:
            raise ProtocolError("PUSH_PROMISE, though push is disabled")
        # PRIORITY and unknown types are ignored (RFC 9113 §4.1, §5.5).

    def _settings(self, payload: memoryview) -> None:
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            # Values outside what RFC 9113 §6.5.2 allows are a connection error.
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(f"SETTINGS_INITIAL_WINDOW_SIZE {value} is over 2^31-1")
                self._peer_stream_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not 16_384 <= value <= MAX_FRAME:
                    raise ProtocolError(f"SETTINGS_MAX_FRAME_SIZE {value} is outside 2^14..2^24-1")
                self._peer_max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
            elif key == SETTINGS_ENABLE_PUSH and value != 0:
                # A server may not send it at all other than as 0 (RFC 9113 §6.5.2).
                raise ProtocolError(f"SETTINGS_ENABLE_PUSH {value} from a server")
        self._outbound.append(frame_header(0, SETTINGS, ACK, 0))

    def _header_fragment(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if kind == HEADERS:
            if self._block_id:
                raise ProtocolError("HEADERS inside a header block")
            start, end = 0, len(payload)
            if flags & PADDED:
                if not payload:
                    raise ProtocolError("a padded HEADERS frame without its pad length")
                end -= payload[0]
                start = 1
            if flags & PRIORITY_FLAG:
                start += 5
            if start > end:
                raise ProtocolError("HEADERS padding longer than the frame")
            self._block = bytearray(payload[start:end])
            self._block_id = stream_id
            self._block_end = bool(flags & END_STREAM)
        else:
            if stream_id != self._block_id:
                raise ProtocolError("CONTINUATION of another stream")
            self._block += payload
        if flags & END_HEADERS:
            block, self._block = bytes(self._block), bytearray()
            stream_id, self._block_id = self._block_id, 0
            self._headers(stream_id, self._decode(block), self._block_end)

    def _decode(self, block: bytes) -> dict[bytes, bytes]:
        """A header block's fields. Decoded whatever its stream: the decoder's table must follow the
        server's. A server repeats the same few blocks (`:status 200` and `grpc-status 0`, indexed), so
        the fields of a block that leaves the table as it is are kept, until a block changes it."""
        fields = self._decoded.get(block)
        if fields is None:
            fields = dict(self._decoder.decode(block, raw=True))
            if not keeps_table(block):
                self._decoded.clear()
            elif len(self._decoded) < DECODED_BLOCKS:
                self._decoded[block] = fields
        return fields

    def _headers(self, stream_id: int, fields: dict[bytes, bytes], end: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if not stream.headers:
            stream.headers = True
            status = fields.get(b":status", b"")
            if status != b"200":
                number = int(status) if status.isdigit() else 0
                code = _HTTP_TO_GRPC.get(number, grpc.StatusCode.UNKNOWN)
                self._fail(stream_id, code, f"HTTP status {status.decode(errors='replace')} from the backend")
                return
            if b"grpc-status" not in fields:
                if end:
                    self._fail(stream_id, grpc.StatusCode.INTERNAL, "the reply ended without trailers")
                return
        if b"grpc-status" not in fields:
            self._fail(stream_id, grpc.StatusCode.INTERNAL, "trailers without grpc-status")
            return
        number = int(fields[b"grpc-status"]) if fields[b"grpc-status"].isdigit() else -1
        code = _STATUS.get(number, grpc.StatusCode.UNKNOWN)
        if code is not grpc.StatusCode.OK:
            details = urllib.parse.unquote(fields.get(b"grpc-message", b"").decode(errors="replace"))
            self._fail(stream_id, code, details)
            return
        if stream.message is None or stream.filled != len(stream.message):
            self._fail(stream_id, grpc.StatusCode.INTERNAL, "the call ended OK without a reply message")
            return
        del self._streams[stream_id]
        self._events.append(Answered(stream_id, stream.message))

    def _fail(self, stream_id: int, code: grpc.StatusCode, details: str, retriable: bool = False) -> None:
        if self._streams.pop(stream_id, None) is None:
            return
        self._events.append(Failed(stream_id, CallError(code, details, retriable)))
        if self._data_id == stream_id:
            self._data = None

    def _reset(self, stream_id: int, code: int) -> None:
        if code == REFUSED_STREAM:
            self._fail(
                stream_id, grpc.StatusCode.UNAVAILABLE, "the backend refused the stream", retriable=True
            )
        elif code == CANCEL:
            self._fail(stream_id, grpc.StatusCode.CANCELLED, "the backend cancelled the call")
        else:
            self._fail(stream_id, grpc.StatusCode.INTERNAL, f"the backend reset the stream (error {code})")

    def _goaway(self, last: int, code: int, debug: str) -> None:
        """The server takes no new stream (it is shutting down, or found an error: `code`); those
        after `last` it never started, and can be sent again elsewhere."""
        self.closing = True
        details = f"the backend is going away (GOAWAY {code}{': ' + debug if debug else ''})"
        for stream_id in [s for s in self._streams if s > last]:
            self._fail(stream_id, grpc.StatusCode.UNAVAILABLE, details, retriable=True)

    def _connection_error(self, details: str) -> None:
        for stream_id in list(self._streams):
            self._fail(
                stream_id, grpc.StatusCode.INTERNAL, f"HTTP/2 protocol error from the backend: {details}"
            )
        self._outbound += (frame_header(8, GOAWAY, 0, 0), struct.pack(">II", 0, PROTOCOL_ERROR))
        self.closing = True


#: What a call's callback is given: its reply message, or how it failed.
Outcome = bytearray | CallError


class Http2Connection(asyncio.BufferedProtocol):
    """An `Http2Client` on an asyncio connection, each call's outcome handed to its callback."""

    def __init__(
        self, authority: str, on_closed: Callable[[Http2Connection], None] = lambda connection: None
    ) -> None:
        """`on_closed` is called once the connection is gone."""
        self._client = Http2Client(authority)
        self._on_closed = on_closed
        self._calls: dict[int, Callable[[Outcome], None]] = {}
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def authority(self) -> str:
        return self._client.authority

    @property
    def closing(self) -> bool:
        """No new calls: the server sent GOAWAY, the connection is closing or lost."""
        return self._client.closing

    def call(
        self,
        method: str,
        metadata: Sequence[tuple[str, str]],
        timeout_s: float,
        message: bytes,
        done: Callable[[Outcome], None],
    ) -> int | None:
        """`Http2Client.call`: `done` is called once with the reply message, or the CallError the
        call failed with, from within the protocol's callbacks (so it must not raise), unless the call
        is given up first (`cancel`)."""
        stream_id = self._client.call(method, metadata, timeout_s, message) if self.transport else None
        if stream_id is not None:
            self._calls[stream_id] = done
        self._act()
        return stream_id

    def cancel(self, stream_id: int) -> None:
        """Give a call up: its callback is not called, the server is told."""
        self._calls.pop(stream_id, None)
        self._client.cancel(stream_id)
        self._act()

    def close(self) -> None:
        """Take no new calls; close once the calls under way are answered."""
        self._client.closing = True
        self._act()

    def abort(self) -> None:
        self._client.closing = True
        if self.transport is not None:
            self.transport.abort()

    def keepalive(self) -> None:
        """`Http2Client.keepalive`: a connection taken for dead is aborted, failing its calls (those
        the server never took can go elsewhere)."""
        if self._client.keepalive():
            self.abort()
        else:
            self._act()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self._act()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.connection_lost(exc)
        self._act()
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_closed(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._client.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._client.buffer_updated(nbytes)
        self._act()

    def _act(self) -> None:
        """Settle the calls the client has news of, send what it has to send, close when it should."""
        for event in self._client.events_received():
            done = self._calls.pop(event.stream_id, None)
            if done is not None:
                done(event.message if isinstance(event, Answered) else event.error)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        data = self._client.data_to_send()
        if data:
            transport.writelines(data)
        if self._client.should_close:
            transport.close()
