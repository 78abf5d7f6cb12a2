"""Frames to the backends: one carrier for every frame, traced or not.

Every frame (v1, v2, JSON) goes through `FrameDispatcher.submit` and leaves on the proxy's own HTTP/2
connection to a SERVING backend (`lipsync_proxy.backends` picks which, in turn):

* Quiet: a frame with nothing else under way leaves at once, as a unary `Infer`.
* Under load: frames that arrive while others are under way are gathered until the event loop's next
  turn and go as one `InferBatch` (at most `--max-batch`). Nothing waits for a batch to fill: under
  load one turn reads many connections, so batches form by themselves. The server answers each item on
  its own (a per-item `Error`), so one bad frame fails only itself; each frame gets a copy of its item,
  so that a client that reads slowly holds its own frame, not its whole batch.
* The one fallback: a call a backend never took (it refused the stream, was going away, or its
  connection was lost before it answered anything) goes once more to the next backend, within the
  frames' deadline, as grpc's channel retries a call on UNAVAILABLE.

A frame keeps its deadline (`--timeout`: the call carries `grpc-timeout` and is reset at it) and its
cancellation at the server: a call is reset once every frame in it has been given up.

Tracing follows the frame without changing its path. A call that carries sampled frames sends one of
their request spans as its `traceparent`, so the server continues that frame's trace; the call's other
sampled frames get a link to that span. A frame whose client sent a sampled trace context of its own is
the one whose span goes, and no call carries two such frames: each is traced end to end. Any other
call sends a `traceparent` whose sampled flag is off, so the server does not trace it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import NamedTuple, cast

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.trace import Span, Tracer

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.backends import Backend, BackendPool
from lipsync_proxy.errors import BackendError, failure
from lipsync_proxy.http2 import CallError, Http2Connection
from lipsync_proxy.wire import INFER_BATCH_METHOD, INFER_METHOD, WireError, encode_batch, split_batch

logger = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str], ...]
Reply = lipsync_pb2.InferResponse

#: The last hex digit of a W3C `traceparent` whose sampled flag is set.
_SAMPLED_FLAGS = frozenset("13579bdfBDF")


def untraced() -> Metadata:
    """Metadata asking the server not to trace a call: a W3C `traceparent` of a fresh trace whose
    sampled flag is off, which a server sampling by its parent (the OpenTelemetry default) follows."""
    return (("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"),)


def traceparent(span: Span) -> Metadata:
    """Metadata carrying `span`'s context as a W3C `traceparent`: the server's spans become its children."""
    context = span.get_span_context()
    flags = "01" if context.trace_flags.sampled else "00"
    return (("traceparent", f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"),)


class _Work:
    """A task sending frames, and how many of them someone still waits for."""

    __slots__ = ("task", "waiting")

    def __init__(self, task: asyncio.Task[None], waiting: int) -> None:
        self.task = task
        self.waiting = waiting

    def give_up_one(self) -> None:
        """One of its frames was given up; once all are, the task is cancelled and its call with it."""
        self.waiting -= 1
        if self.waiting == 0:
            self.task.cancel()


class _Frame:
    """One frame request on its way: its serialized `InferRequest` and the future of its reply."""

    __slots__ = ("deadline", "future", "own_trace", "request", "span", "traceparent", "work")

    def __init__(
        self,
        request: bytes,
        future: asyncio.Future[Reply],
        deadline: float,
        span: Span | None,
        traceparent: str | None,
    ) -> None:
        self.request = request
        self.future = future
        #: The event loop's time by which it must be answered.
        self.deadline = deadline
        #: Its request's span while that is recorded (sampled).
        self.span = span
        #: The client's own trace context, and whether the client sampled it.
        self.traceparent = traceparent
        self.own_trace = traceparent is not None and traceparent[-1:] in _SAMPLED_FLAGS
        #: What is sending it, once something is.
        self.work: _Work | None = None

    def resolve(self, reply: Reply) -> None:
        if not self.future.done():
            self.future.set_result(reply)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Call(NamedTuple):
    """What one call sends: its method, serialized request, how many frames, metadata and deadline,
    and when it was made (`time.perf_counter()`)."""

    method: str
    request: bytes
    frames: int
    metadata: Metadata
    deadline: float
    made: float


class _Attempt(NamedTuple):
    """A call sent on a backend's connection: its stream, and the future of its reply."""

    backend: Backend
    connection: Http2Connection
    stream_id: int
    reply: asyncio.Future[bytearray]


class FrameDispatcher:
    """Sends frames to the backends of `pool` (see the module's docstring)."""

    def __init__(
        self,
        pool: BackendPool,
        timeout_s: float,
        max_batch: int,
        tracer: Tracer | None = None,
        record: Callable[[str, int, float], None] = lambda method, frames, seconds: None,
    ) -> None:
        """`record(method, frames, seconds)` is told of every call once it is over: the method
        ("Infer" or "InferBatch"), the frames it carried and how long it took. `tracer`: the proxy's,
        when it traces."""
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._pool = pool
        self._tracer = tracer
        self._record = record
        self._pending: list[_Frame] = []
        #: Frames whose callers wait for them.
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(
        self, request: bytes, span: Span | None = None, traceparent: str | None = None
    ) -> asyncio.Future[Reply]:
        """The future of the `InferResponse` of one serialized `InferRequest` (BackendError when the
        call carrying it fails; an item's own error is in the reply). Cancelling the future
        gives the frame up. `span`: the frame's request span, when it is recorded; `traceparent`: the
        client's own trace context, which goes to the server as it came while the proxy does not
        trace."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        if self._closed:
            future.set_exception(BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down"))
            return future
        frame = _Frame(request, future, loop.time() + self.timeout_s, span, traceparent)
        if self._waiting == 0:
            # The only frame under way: it leaves now rather than at the loop's next turn.
            self._start([frame])
        else:
            if not self._pending:
                loop.call_soon(self._flush)
            self._pending.append(frame)
        self._waiting += 1

        def answered(future: asyncio.Future[Reply]) -> None:
            self._waiting -= 1
            # Given up (its client went away, a CANCEL, shutdown): a frame still pending is skipped by
            # the flush; one on its way counts as given up in its call, cancelled with its last frame.
            if future.cancelled() and frame.work is not None:
                frame.work.give_up_one()

        future.add_done_callback(answered)
        return future

    def _flush(self) -> None:
        frames = [frame for frame in self._pending if not frame.future.done()]
        self._pending = []
        call: list[_Frame] = []
        own_trace = False
        for frame in frames:
            if len(call) == self.max_batch or (frame.own_trace and own_trace):
                self._start(call)
                call, own_trace = [], False
            call.append(frame)
            own_trace = own_trace or frame.own_trace
        if call:
            self._start(call)

    def _start(self, frames: list[_Frame]) -> None:
        """Send `frames` in one call: it leaves now when a connection can take it (a lone frame does
        not wait for a task's first turn), and a task sees it through, which is cancelled (and the
        call with it) once every one of the frames has been given up."""
        batch = len(frames) > 1
        call = _Call(
            INFER_BATCH_METHOD if batch else INFER_METHOD,
            encode_batch([frame.request for frame in frames]) if batch else frames[0].request,
            len(frames),
            self._metadata(frames),
            min(frame.deadline for frame in frames),
            time.perf_counter(),
        )
        first = self._send_on(self._pool.pick(), call)
        task = asyncio.ensure_future(self._call(frames, call, first))
        self._tasks.add(task)
        work = _Work(task, len(frames))
        for frame in frames:
            frame.work = work

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                if first is not None:
                    # Cancelled before its first turn: the call it never awaited is cancelled here
                    # (and an error it got already is taken as read, which asyncio would log).
                    first.connection.cancel(first.stream_id)
                    if first.reply.done() and not first.reply.cancelled():
                        first.reply.exception()
                # Every frame was given up (nothing to answer), or the proxy is closing.
                for frame in frames:
                    frame.fail(BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down"))
            elif (error := task.exception()) is not None:
                # A bug. Its frames are answered now rather than never.
                logger.error("sending frames failed", exc_info=error)
                for frame in frames:
                    frame.fail(BackendError(grpc.StatusCode.INTERNAL, "the proxy failed to send the frame"))

        task.add_done_callback(done)

    @staticmethod
    def _send_on(picked: tuple[Backend, Http2Connection] | None, call: _Call) -> _Attempt | None:
        """`call` sent on the picked backend's connection; None when there is none, or it cannot take
        the call now (closing, or the request does not fit its windows)."""
        if picked is None:
            return None
        backend, connection = picked
        timeout = call.deadline - asyncio.get_running_loop().time()
        started = connection.call(call.method, call.metadata, timeout, call.request)
        return None if started is None else _Attempt(backend, connection, *started)

    async def _call(self, frames: list[_Frame], call: _Call, first: _Attempt | None) -> None:
        try:
            reply = await self._send(call, first)
            # Each frame's reply parsed into a message of its own: a copy, not a view of the batch,
            # so that a client that reads slowly holds its own frame (found by the fault suite: 40
            # clients that stop reading pinned 86 MiB instead of their own 34).
            items = [_parse(item) for item in split_batch(reply)] if call.frames > 1 else [_parse(reply)]
            if len(items) != len(frames):
                raise BackendError(
                    grpc.StatusCode.INTERNAL, f"InferBatch answered {len(items)} of {len(frames)} frames"
                )
        except BackendError as error:
            for frame in frames:
                frame.fail(error)
            return
        except (WireError, DecodeError) as exc:
            malformed = BackendError(grpc.StatusCode.INTERNAL, f"malformed reply of {call.method}: {exc}")
            for frame in frames:
                frame.fail(malformed)
            return
        finally:
            name = "InferBatch" if call.frames > 1 else "Infer"
            self._record(name, call.frames, time.perf_counter() - call.made)
        for frame, item in zip(frames, items, strict=True):
            frame.resolve(item)

    async def _send(self, call: _Call, first: _Attempt | None) -> bytearray:
        """The serialized reply of `call` on a backend's connection (`first`, when it was sent already);
        a call the backend never took goes once more, to the next backend. Raises BackendError."""
        for attempt in range(2):
            sent = first if not attempt else None
            if sent is None:
                sent = self._send_on(await self._pool.wait(call.deadline), call)
                if sent is None:
                    continue
            try:
                async with asyncio.timeout_at(call.deadline):
                    answer = await sent.reply
            except TimeoutError:
                sent.connection.cancel(sent.stream_id)
                sent.backend.count(call.frames, failed=True)
                raise BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
            except asyncio.CancelledError:
                sent.connection.cancel(sent.stream_id)
                raise
            except CallError as exc:
                if not exc.retriable or attempt:
                    sent.backend.count(call.frames, failed=True)
                    raise failure(exc.code, exc.details) from None
                logger.debug("a backend did not take a call, it goes to the next: %s", exc)
            else:
                sent.backend.count(call.frames, failed=False)
                return answer
        raise BackendError(grpc.StatusCode.UNAVAILABLE, "no backend took the call")

    def _metadata(self, frames: list[_Frame]) -> Metadata:
        """The call's trace context (see the module's docstring)."""
        sampled = [frame.span for frame in frames if frame.span is not None]
        if sampled:
            owners = [frame.span for frame in frames if frame.own_trace and frame.span is not None]
            parent = owners[0] if owners else sampled[0]
            context = parent.get_span_context()
            for span in sampled:
                if span is not parent:
                    span.add_link(context)
            return traceparent(parent)
        if self._tracer is None:
            # The proxy does not trace: a client's sampled context goes on as it came.
            for frame in frames:
                if frame.own_trace and frame.traceparent is not None:
                    return (("traceparent", frame.traceparent),)
        return untraced()

    async def close(self) -> None:
        """Give up every frame still under way."""
        self._closed = True
        for frame in self._pending:
            frame.fail(BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down"))
        self._pending = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _parse(data: bytearray | memoryview) -> Reply:
    # The parser takes any buffer (its stubs say bytes): a batch's item is parsed from its view.
    return Reply.FromString(cast(bytes, data))
