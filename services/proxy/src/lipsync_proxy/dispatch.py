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
from typing import cast

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.trace import Span, Tracer

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.backends import Backend, BackendPool
from lipsync_proxy.errors import BackendError, failure
from lipsync_proxy.http2 import CallError, Http2Connection, Outcome
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


class _Frame:
    """One frame request on its way: its serialized `InferRequest` and the future of its reply."""

    __slots__ = ("call", "deadline", "future", "own_trace", "request", "span", "traceparent")

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
        #: The call carrying it, once one does.
        self.call: _Call | None = None

    def resolve(self, reply: Reply) -> None:
        if not self.future.done():
            self.future.set_result(reply)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Call:
    """One call carrying frames, from its sending to its frames' answers, driven by callbacks rather
    than a task: the connection hands it its reply as the reply is read, and its frames are answered
    there and then; a timer resets it at its deadline. Only a call that must wait for a backend's
    connection to open waits in a task."""

    __slots__ = (
        "backend",
        "connection",
        "deadline",
        "dispatcher",
        "frames",
        "made",
        "metadata",
        "method",
        "request",
        "retried",
        "stream_id",
        "timer",
        "waiter",
        "waiting",
    )

    def __init__(self, dispatcher: FrameDispatcher, frames: list[_Frame], metadata: Metadata) -> None:
        self.dispatcher = dispatcher
        self.frames = frames
        batch = len(frames) > 1
        self.method = INFER_BATCH_METHOD if batch else INFER_METHOD
        self.request = encode_batch([frame.request for frame in frames]) if batch else frames[0].request
        self.metadata = metadata
        self.deadline = min(frame.deadline for frame in frames)
        self.made = time.perf_counter()
        #: How many of its frames someone still waits for.
        self.waiting = len(frames)
        #: Whether it went once more to the next backend already.
        self.retried = False
        # Where it is under way, while it is: a backend's connection, or a task waiting for one.
        self.backend: Backend | None = None
        self.connection: Http2Connection | None = None
        self.stream_id = 0
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Task[None] | None = None

    def send(self, picked: tuple[Backend, Http2Connection] | None) -> None:
        """Send it on the picked backend's connection, or, with none picked, on the first that is
        ready (`BackendPool.wait`)."""
        if picked is None:
            self.waiter = asyncio.ensure_future(self._wait())
            return
        backend, connection = picked
        loop = asyncio.get_running_loop()
        stream_id = connection.call(
            self.method, self.metadata, self.deadline - loop.time(), self.request, self._answered
        )
        if stream_id is None:
            # Closing, or the request does not fit its windows: as a call the backend never took.
            self._again(BackendError(grpc.StatusCode.UNAVAILABLE, "no backend took the call"))
            return
        self.backend, self.connection, self.stream_id = backend, connection, stream_id
        self.timer = loop.call_at(self.deadline, self._timed_out)

    async def _wait(self) -> None:
        try:
            picked = await self.dispatcher.pool.wait(self.deadline)
        except BackendError as error:
            self._finish(error)
            return
        self.waiter = None
        self.send(picked)

    def _again(self, error: BackendError) -> None:
        """A call no backend took goes once more, to the next backend; a second time is its error."""
        if self.retried:
            self._finish(error)
        else:
            self.retried = True
            self.send(self.dispatcher.pool.pick())

    def _answered(self, outcome: Outcome) -> None:
        """The connection's news of the call: its reply, or how it failed."""
        backend = self._leave()
        assert backend is not None
        try:
            if not isinstance(outcome, CallError):
                backend.count(len(self.frames), failed=False)
                self._finish(outcome)
            elif outcome.retriable and not self.retried:
                logger.debug("a backend did not take a call, it goes to the next: %s", outcome)
                self._again(failure(outcome.code, outcome.details))
            else:
                backend.count(len(self.frames), failed=True)
                self._finish(failure(outcome.code, outcome.details))
        except Exception:
            # A bug. Its frames are answered now rather than never.
            logger.exception("sending frames failed")
            self._finish(BackendError(grpc.StatusCode.INTERNAL, "the proxy failed to send the frame"))

    def _timed_out(self) -> None:
        self.timer = None
        backend = self._leave(cancel=True)
        if backend is not None:
            backend.count(len(self.frames), failed=True)
        self._finish(BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    def give_up_one(self) -> None:
        """One of its frames was given up; once all are, the call is reset."""
        self.waiting -= 1
        if self.waiting == 0:
            self.abandon(BackendError(grpc.StatusCode.CANCELLED, "every frame was given up"))

    def abandon(self, error: BackendError) -> None:
        """Stop the call wherever it is: the server is told, its frames still waited for fail."""
        self._leave(cancel=True)
        if self.waiter is not None:
            self.waiter.cancel()
            self.waiter = None
        self._finish(error)

    def _leave(self, cancel: bool = False) -> Backend | None:
        """No longer under way on its connection (reset there when `cancel`); the backend it was on."""
        backend, connection = self.backend, self.connection
        if connection is not None and cancel:
            connection.cancel(self.stream_id)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.backend = self.connection = None
        return backend

    def _finish(self, outcome: bytearray | BackendError) -> None:
        """Answer its frames: each its item of the reply, or the call's error."""
        dispatcher = self.dispatcher
        if self not in dispatcher.calls:
            return
        dispatcher.calls.discard(self)
        frames = self.frames
        for frame in frames:
            # A frame and its call refer to each other: without this, a frame's reply would wait for
            # the garbage collector, however soon its client had it.
            frame.call = None
        dispatcher.record(
            "InferBatch" if len(frames) > 1 else "Infer", len(frames), time.perf_counter() - self.made
        )
        if not isinstance(outcome, BackendError):
            try:
                # Each frame's reply parsed into a message of its own: a copy, not a view of the batch,
                # so that a client that reads slowly holds its own frame (found by the fault suite: 40
                # clients that stop reading pinned 86 MiB instead of their own 34).
                items = (
                    [_parse(item) for item in split_batch(outcome)] if len(frames) > 1 else [_parse(outcome)]
                )
            except (WireError, DecodeError) as exc:
                outcome = BackendError(grpc.StatusCode.INTERNAL, f"malformed reply of {self.method}: {exc}")
            else:
                if len(items) != len(frames):
                    outcome = BackendError(
                        grpc.StatusCode.INTERNAL, f"InferBatch answered {len(items)} of {len(frames)} frames"
                    )
                else:
                    for frame, item in zip(frames, items, strict=True):
                        frame.resolve(item)
                    return
        for frame in frames:
            frame.fail(outcome)


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
        self.pool = pool
        self.record = record
        self._tracer = tracer
        self._pending: list[_Frame] = []
        #: Frames whose callers wait for them.
        self._waiting = 0
        #: The calls under way.
        self.calls: set[_Call] = set()
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
            # the flush; one on its way counts as given up in its call, reset with its last frame.
            if future.cancelled() and frame.call is not None:
                frame.call.give_up_one()

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
        """Send `frames` in one call."""
        call = _Call(self, frames, self._metadata(frames))
        self.calls.add(call)
        for frame in frames:
            frame.call = call
        call.send(self.pool.pick())

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
        shutting_down = BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down")
        for frame in self._pending:
            frame.fail(shutting_down)
        self._pending = []
        waiters = [call.waiter for call in self.calls if call.waiter is not None]
        for call in list(self.calls):
            call.abandon(shutting_down)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)


def _parse(data: bytearray | memoryview) -> Reply:
    # The parser takes any buffer (its stubs say bytes): a batch's item is parsed from its view.
    return Reply.FromString(cast(bytes, data))
