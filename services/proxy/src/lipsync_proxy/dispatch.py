"""Frames to the backends: a lone frame on a stream, frames that arrive together in one batch.

A unary `Infer` per frame costs both sides the most: every call opens an HTTP/2 stream with headers
and trailers, and the server starts a handler for it. `FrameDispatcher` sends each frame the cheapest
way that keeps what a unary call guarantees (docs/performance.md, "How the proxy sends frames"):

* A frame with nothing else under way leaves at once. Others are gathered until the event loop's next
  turn; nothing waits for more: under load one turn reads many connections, so batches form by
  themselves, and a quiet proxy sends single frames.
* Several frames go as one `InferBatch` call of at most `--max-batch` frames. The server answers each
  item on its own (a per-item `Error`), so one bad frame fails only itself; the call has the frames'
  deadline, and it is cancelled once every frame in it has been given up. Each frame gets a copy of
  its item, so that a client that reads slowly holds its own frame, not its whole batch. A batch
  goes on the proxy's own HTTP/2 connection to a SERVING backend address when there is one
  (`lipsync_proxy.backend_connections`: grpc.aio's threads and copies cost a fifth of the proxy's
  CPU per frame under load); one that backend never took (it refused the stream or was going away)
  goes again through grpc.aio, whose channel also retries it on UNAVAILABLE as it retries `Infer`.
  The other way round, a batch or lone frame for which grpc found no backend (UNAVAILABLE) goes on an
  own connection if one is ready: after a backend comes back, the two recover at different moments.
* A lone frame goes on a free lane: one of up to `--backend-streams` `StreamInfer` streams kept open,
  each carrying ONE frame at a time. One message each way is about 0.25 ms quicker than a unary call
  here. One frame per lane keeps the unary call's guarantees: no frame waits behind another (a stream
  is answered in order), and cancelling the lane's call cancels exactly that frame at the server,
  which is what its deadline or its client's disconnect does; the lane is then replaced. With every
  lane busy, a lone frame is a unary `Infer`. So is one that was gathered alone at the loop's turn
  while the proxy has own connections: it goes on one of them, which costs the proxy less than a
  lane, and it has waited a turn anyway. A unary `Infer` too goes on an own connection when one is
  ready, else through grpc.aio.
* Lanes do not stick to a backend: a lane retires (half-closed, so the server ends it cleanly) after
  `LANE_MAX_AGE_S`, and every lane does when a backend's health changes (`retire_lanes`), so new
  streams go where the channel's round_robin sends calls: not to a backend that stopped serving, and
  also to one that came back or was added.

A frame whose lane fails for a reason of the lane's (its backend went away or is stopping, the stream
ended) is sent again as a unary `Infer` within what is left of its deadline, as the channel would
retry a unary call. The frames of traced requests do not come here: each keeps a call of its own and
its spans (`BackendClient.infer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from lipsync_proxy.backend_stats import CHANNEL, AddressStats
from lipsync_proxy.errors import BackendError
from lipsync_proxy.http2 import CallError
from lipsync_proxy.wire import (
    INFER_BATCH_METHOD,
    INFER_METHOD,
    STREAM_INFER_METHOD,
    encode_batch,
    split_batch,
)

if TYPE_CHECKING:
    from lipsync_proxy.backend_connections import BackendConnections

#: Seconds a lane carries frames before it is replaced (see the module's docstring). Opening a stream
#: costs about one unary call, so a few a second cost nothing; a restarting server stops announcing
#: SERVING a second before it stops taking calls, and a lane opened before that is gone by then.
LANE_MAX_AGE_S = 1.0
#: A retiring lane's stream is cancelled if the server has not ended it by then.
LANE_CLOSE_TIMEOUT_S = 2.0

Metadata = Sequence[tuple[str, str]]

logger = logging.getLogger(__name__)


_SERVER_FAILURES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})


def rpc_error(error: grpc.aio.AioRpcError) -> BackendError:
    """The BackendError of a failed call, its details logged: a server failure at WARNING, the rest
    (the client's mistakes, an unreachable backend the health monitor reports anyway) at DEBUG."""
    return failure(error.code(), error.details() or "")


def failure(code: grpc.StatusCode, details: str) -> BackendError:
    """The BackendError of a failed call or of a frame's own Error in a batch or stream, logged as
    `rpc_error` says."""
    log = logger.warning if code in _SERVER_FAILURES else logger.debug
    log("gRPC call failed: %s %s", code.name, details)
    return BackendError(code, details)


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

    __slots__ = ("deadline", "future", "request", "work")

    def __init__(self, request: bytes, future: asyncio.Future[bytes], deadline: float) -> None:
        self.request = request
        self.future = future
        #: The event loop's time by which it must be answered.
        self.deadline = deadline
        #: What is sending it, once something is.
        self.work: _Work | None = None

    def resolve(self, reply: bytes) -> None:
        if not self.future.done():
            self.future.set_result(reply)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Lane:
    """One `StreamInfer` call that carries one frame at a time."""

    __slots__ = ("call", "expired")

    def __init__(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        self.call = call
        #: Past LANE_MAX_AGE_S: it takes no new frame.
        self.expired = False


class FrameDispatcher:
    """Sends frame requests over lanes and batches (see the module's docstring)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout_s: float,
        streams: int,
        max_batch: int,
        metadata: Callable[[], Metadata],
        record: Callable[[str, int, float], None] = lambda method, frames, seconds: None,
        connections: BackendConnections | None = None,
        stats: AddressStats | None = None,
    ) -> None:
        """`metadata` gives each call's metadata; `record(method, frames, seconds)` is told of every
        exchange once it is over: the method ("Infer", "InferBatch" or "StreamInfer" for a frame on a
        lane), the frames it carried and how long it took. Batches go on `connections` when one is
        ready, else through the channel. `stats` is told of every call's outcome and, where known,
        address (`lipsync_proxy.backend_stats`)."""
        self.timeout_s = timeout_s
        self._stats = stats or AddressStats()
        self.streams = streams
        self.max_batch = max_batch
        self._metadata = metadata
        self._record = record
        self._connections = connections
        self._unary_calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {
            method: channel.unary_unary(method) for method in (INFER_METHOD, INFER_BATCH_METHOD)
        }
        self._stream_infer: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            STREAM_INFER_METHOD
        )
        self._free: list[_Lane] = []
        #: Every open lane, free or carrying a frame.
        self._lanes: set[_Lane] = set()
        self._pending: list[_Frame] = []
        #: Frames whose callers wait for them.
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def infer(self, request: bytes) -> bytes:
        """The serialized `InferResponse` of one serialized `InferRequest`; BackendError when the call
        carrying it fails (an item's own error is in the reply). Cancelling the caller gives the frame up."""
        return await self.submit(request)

    def submit(self, request: bytes) -> asyncio.Future[bytes]:
        """`infer`'s reply as a future, for a caller without a task of its own: cancelling the future
        gives the frame up."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if self._closed:
            future.set_exception(BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down"))
            return future
        frame = _Frame(request, future, loop.time() + self.timeout_s)
        lane = self._take_lane() if self._waiting == 0 else None
        if lane is not None:
            # The only frame under way: it leaves now rather than at the loop's next turn.
            self._start(self._on_lane(lane, frame), frame)
        else:
            if not self._pending:
                loop.call_soon(self._flush)
            self._pending.append(frame)
        self._waiting += 1

        def answered(future: asyncio.Future[bytes]) -> None:
            self._waiting -= 1
            # Given up (its client went away, a CANCEL, shutdown): a frame still pending is skipped by
            # the flush; one on its way counts as given up in its call, cancelled with its last frame.
            if future.cancelled() and frame.work is not None:
                frame.work.give_up_one()

        future.add_done_callback(answered)
        return future

    # --- lanes ------------------------------------------------------------------------------------

    def _take_lane(self) -> _Lane | None:
        """A free lane, or a new one if fewer than `streams` are open; None when all are busy."""
        if self._free:
            return self._free.pop()
        if len(self._lanes) >= self.streams:
            return None
        # The stream starts with its first message. Its deadline only backs up the retirement timer.
        deadline = LANE_MAX_AGE_S + self.timeout_s + LANE_CLOSE_TIMEOUT_S
        lane = _Lane(self._stream_infer(timeout=deadline, metadata=self._metadata()))
        self._lanes.add(lane)
        asyncio.get_running_loop().call_later(LANE_MAX_AGE_S, self._expire, lane)
        return lane

    def _expire(self, lane: _Lane) -> None:
        """Retire a lane now if it is free, else once its frame is answered."""
        lane.expired = True
        if lane in self._free:
            self._free.remove(lane)
            self._retire(lane)

    def retire_lanes(self) -> None:
        """Replace every lane: a backend's health changed, and new streams go where the channel's
        round_robin now sends calls (not to a backend that stopped serving, also to one that came)."""
        for lane in list(self._lanes):
            self._expire(lane)

    async def _on_lane(self, lane: _Lane, frame: _Frame) -> None:
        call = lane.call
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(frame.deadline):
                await call.write(frame.request)
                reply = await call.read()
        except TimeoutError:
            # Cancelling the stream cancels exactly this frame at the server, as a unary deadline does.
            self._drop(lane)
            self._record("StreamInfer", 1, time.perf_counter() - started)
            self._stats.record(CHANNEL, 1, True)
            frame.fail(BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            return
        except asyncio.CancelledError:
            # The frame was given up (its client went away, a CANCEL, shutdown).
            self._drop(lane)
            self._record("StreamInfer", 1, time.perf_counter() - started)
            raise
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            # The stream failed (its backend went away or is stopping), or write() found it ended: the
            # frame is sent again (and counted) as a unary call.
            logger.debug("a backend stream failed, its frame goes as a unary call: %s", exc)
            self._drop(lane)
            await self._unary(frame)
            return
        if reply is grpc.aio.EOF:
            self._drop(lane)
            await self._unary(frame)
            return
        assert isinstance(reply, bytes)
        self._record("StreamInfer", 1, time.perf_counter() - started)
        self._stats.record(CHANNEL, 1, False)
        frame.resolve(reply)
        if lane.expired or self._closed:
            self._retire(lane)
        else:
            self._free.append(lane)

    def _drop(self, lane: _Lane) -> None:
        self._lanes.discard(lane)
        lane.call.cancel()

    def _retire(self, lane: _Lane) -> None:
        """End a free lane's stream: half-closed, the server ends it as a finished call."""
        self._lanes.discard(lane)
        task = asyncio.ensure_future(self._close_lane(lane.call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _close_lane(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        try:
            async with asyncio.timeout(LANE_CLOSE_TIMEOUT_S):
                await call.done_writing()
                while await call.read() is not grpc.aio.EOF:
                    pass
        except (TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass
        finally:
            call.cancel()

    # --- batches ----------------------------------------------------------------------------------

    def _flush(self) -> None:
        frames = [frame for frame in self._pending if not frame.future.done()]
        self._pending = []
        size = self.max_batch
        for start in range(0, len(frames), size):
            chunk = frames[start : start + size]
            if len(chunk) > 1:
                self._start(self._batch(chunk), *chunk)
                continue
            # With own connections, a unary call there costs the proxy less than a frame on a lane
            # (grpc.aio's threads); the lane's quicker answer matters only to a frame that leaves at once.
            lane = None if self._connections else self._take_lane()
            if lane is not None:
                self._start(self._on_lane(lane, chunk[0]), chunk[0])
            else:
                self._start(self._unary(chunk[0]), chunk[0])

    async def _batch(self, frames: list[_Frame]) -> None:
        request = encode_batch([frame.request for frame in frames])
        deadline = min(frame.deadline for frame in frames)
        started = time.perf_counter()
        try:
            try:
                reply = await self._send(INFER_BATCH_METHOD, request, deadline, len(frames))
            finally:
                self._record("InferBatch", len(frames), time.perf_counter() - started)
            items = split_batch(reply)
        except BackendError as exc:
            for frame in frames:
                frame.fail(exc)
            return
        except ValueError as exc:
            error = BackendError(grpc.StatusCode.INTERNAL, f"malformed InferBatchResponse: {exc}")
            for frame in frames:
                frame.fail(error)
            return
        if len(items) != len(frames):
            error = BackendError(
                grpc.StatusCode.INTERNAL,
                f"InferBatch answered {len(items)} of {len(frames)} frames",
            )
            for frame in frames:
                frame.fail(error)
            return
        for frame, item in zip(frames, items, strict=True):
            # A copy of its own for each frame: a view would keep the whole batch alive for as long as
            # the slowest of its clients takes to read its frame (found by the fault suite: 40 clients
            # that stop reading pinned 86 MiB instead of their own 34).
            frame.resolve(bytes(item))

    async def _unary(self, frame: _Frame) -> None:
        if frame.deadline <= asyncio.get_running_loop().time():
            frame.fail(BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            return
        started = time.perf_counter()
        try:
            reply = await self._send(INFER_METHOD, frame.request, frame.deadline, 1)
        except BackendError as error:
            frame.fail(error)
            return
        finally:
            self._record("Infer", 1, time.perf_counter() - started)
        # bytes() of a grpc reply is the reply itself; an own connection's is copied into the bytes
        # every frame's reply is.
        frame.resolve(bytes(reply))

    async def _send(self, method: str, request: bytes, deadline: float, frames: int) -> bytes | bytearray:
        """The serialized reply of one call of `method` (`Infer` or `InferBatch`) carrying `frames`
        frames, on an own connection if one is ready, else through grpc; raises BackendError."""
        reply = await self._own_call(method, request, deadline, frames)
        if reply is not None:
            return reply
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            grpc_reply: bytes = await self._unary_calls[method](
                request, timeout=timeout, metadata=self._metadata()
            )
        except grpc.aio.AioRpcError as exc:
            self._stats.record(CHANNEL, frames, True)
            reply = await self._own_call_instead(exc, method, request, deadline, frames)
            if reply is None:
                raise rpc_error(exc) from None
            return reply
        self._stats.record(CHANNEL, frames, False)
        return grpc_reply

    async def _own_call(self, method: str, request: bytes, deadline: float, frames: int) -> bytearray | None:
        """The reply of a call on an own connection; None when none is ready or its backend never
        took the call (it refused the stream or was going away), which grpc then carries. Raises
        BackendError when the call fails."""
        connection = self._connections.pick() if self._connections else None
        if connection is None:
            return None
        started = connection.call(
            method, self._metadata(), deadline - asyncio.get_running_loop().time(), request
        )
        if started is None:
            return None
        stream_id, reply = started
        try:
            async with asyncio.timeout_at(deadline):
                answer = await reply
        except TimeoutError:
            connection.cancel(stream_id)
            self._stats.record(connection.authority, frames, True)
            raise BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except asyncio.CancelledError:
            connection.cancel(stream_id)
            raise
        except CallError as exc:
            if not exc.retriable:
                self._stats.record(connection.authority, frames, True)
                raise failure(exc.code, exc.details) from None
            # No server took it: it goes again, as grpc's channel would send it again.
            logger.debug("a backend did not take a call, it goes through grpc: %s", exc)
            return None
        self._stats.record(connection.authority, frames, False)
        return answer

    async def _own_call_instead(
        self, error: grpc.aio.AioRpcError, method: str, request: bytes, deadline: float, frames: int
    ) -> bytearray | None:
        """After grpc found no backend for a call (UNAVAILABLE), the call on an own connection if one
        is ready, else None. The two recover at different moments after a backend comes back (grpc's
        reconnect backoff, the pool's health watch), and a frame goes on whichever serves first."""
        if error.code() is not grpc.StatusCode.UNAVAILABLE:
            return None
        return await self._own_call(method, request, deadline, frames)

    # --- tasks ------------------------------------------------------------------------------------

    def _start(self, coroutine: Coroutine[Any, Any, None], *frames: _Frame) -> None:
        """Run `coroutine` to send `frames`; it is cancelled (and its call with it) once every one of
        them has been given up."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        work = _Work(task, len(frames))
        for frame in frames:
            frame.work = work

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                # Every frame was given up (nothing to answer), or the proxy is closing.
                for frame in frames:
                    frame.fail(BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down"))
            elif (error := task.exception()) is not None:
                # A bug. Its frames are answered now rather than never.
                logger.error("sending frames failed", exc_info=error)
                for frame in frames:
                    frame.fail(BackendError(grpc.StatusCode.INTERNAL, "the proxy failed to send the frame"))

        task.add_done_callback(done)

    async def close(self) -> None:
        """Give up every frame and stream still under way."""
        self._closed = True
        for frame in self._pending:
            frame.fail(BackendError(grpc.StatusCode.UNAVAILABLE, "the proxy is shutting down"))
        self._pending = []
        for lane in self._free:
            self._drop(lane)
        self._free = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
