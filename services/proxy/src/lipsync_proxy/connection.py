"""One WebSocket connection: read messages, serve each, write the replies in order, cancel on loss.

The handler only moves messages between the protocol codecs (`lipsync_protocol`) and the gRPC
mapping (`lipsync_proxy.mapping`, `lipsync_proxy.sessions`):

* Backpressure: the handler takes one of `--max-inflight` slots before it reads a message and a
  request gives it back once its reply is written, so a connection never has more requests in flight
  and the handler stops reading (TCP pushes back on the client) instead of queueing.
* Rate limits (`lipsync_proxy.rate_limit`): a connection over its rate, or whose client address is
  over its rate, is read later; one from an address with its maximum of connections is closed (1013).
* v1 (no subprotocol): replies are written in request order. Each request waits for the turn of the
  request before it, so a pipelining client gets its frames in order while up to `--max-inflight`
  of them are worked on at once. A binary frame (traced or not) is answered from its backend call's
  done callback, without a task of its own: it is most of the traffic, and a task with its chain of
  coroutines is a sizeable share of what a frame costs the proxy. JSON requests are tasks, which wait
  for the turn before them.
* v2 (`lipsync.v2`): replies are written as they complete; each carries its request id. Sessions
  are `lipsync_proxy.sessions.SpeakSession` tasks.
* JSON text messages are accepted on both, in the connection's order discipline.
* Loss: the moment the TCP connection is lost, every task and frame of the connection is given up,
  and with them its gRPC calls and streams.
* Shutdown (`stop`): the handler stops reading, lets the requests it has read finish until the grace
  deadline, then closes the connection with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State
from websockets.typing import Subprotocol

from lipsync_protocol import json_messages, v2
from lipsync_protocol.errors import ProtocolError
from lipsync_proxy import mapping
from lipsync_proxy.rate_limit import Throttle, TooManyConnectionsError, client_address
from lipsync_proxy.sessions import SessionError, SpeakSession
from lipsync_proxy.state import ProxyState

logger = logging.getLogger(__name__)

#: Talking sessions one connection may have open at once.
MAX_SESSIONS_PER_CONNECTION = 4
CLIENT_CANCELLED = "cancelled by the client"

Work = Callable[[ProxyState, Any, float], Awaitable[mapping.Reply]]


class ProxyConnection(ServerConnection):
    """websockets' server connection, telling its handler the moment the TCP connection is lost, and
    dropping a peer that has stopped reading.

    recv() notices a closed connection too, but a handler that waits for a free slot is not in
    recv(); this hook cancels the connection's work at once either way.

    A peer that stops reading answers no keepalive ping either, but the ping waits behind the unsent
    replies and so never times out (found by the fault suite): such a connection would hold its
    replies for ever. Once writing has been paused (the send buffer full) for as long as a ping may go
    unanswered (`--ping-interval`, twice), the peer is taken for dead and the connection dropped."""

    on_lost: Callable[[], None] | None = None
    _stalled: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.ping_interval is not None and self.ping_timeout is not None:
            patience = self.ping_interval + self.ping_timeout
            self._stalled = self.loop.call_later(patience, self._drop, patience)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall()

    def _drop(self, patience: float) -> None:
        self._stalled = None
        logger.info("dropped a WebSocket peer that took no data for %.0f s", patience)
        self.transport.abort()

    def _cancel_stall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def send_now(self, message: str | bytes | memoryview) -> bool:
        """Write one binary message straight to the transport as one frame, header and payload written
        together, whenever nothing else is being sent: websockets' send() spends an async context
        manager and two copies of the payload per frame, ~10 µs of a 98 KB frame (docs/performance.md).
        False, with nothing written, for a text message or while that cannot be done: send() it then."""
        if (
            isinstance(message, str)
            or self.protocol.state is not State.OPEN
            or self.send_in_progress is not None
            or self.transport.is_closing()
        ):
            return False
        # Whatever the protocol has queued (a pong, say) goes first.
        self.send_data()
        self.transport.writelines((binary_frame_header(len(message)), message))
        return True

    async def send_reply(self, message: str | bytes | memoryview) -> None:
        """Send one message: `send_now` when it can, else send(); returns once the peer takes data."""
        if not self.send_now(message):
            await self.send(message)
        elif self.paused:
            await self.drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall()
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()


_V2 = Subprotocol(v2.SUBPROTOCOL)


def binary_frame_header(size: int) -> bytes:
    """The header of a final, unmasked binary frame of `size` bytes (RFC 6455 §5.2): a server's."""
    if size < 126:
        return bytes((0x82, size))
    if size < 1 << 16:
        return b"\x82\x7e" + size.to_bytes(2, "big")
    return b"\x82\x7f" + size.to_bytes(8, "big")


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """`lipsync.v2` when the client offers it; otherwise no subprotocol (v1), whatever it offers."""
    return _V2 if _V2 in offered else None


class _FrameReply:
    """A v1 frame answered without a task of its own (`ConnectionHandler._frame`): its reply is written
    once the backend has answered and the request read before it has been answered, v1's order."""

    __slots__ = ("answer", "call", "previous", "turn")

    def __init__(
        self,
        call: mapping.Reply | mapping.FrameCall,
        previous: asyncio.Future[None] | None,
        turn: asyncio.Future[None],
        answer: Callable[[_FrameReply], None],
    ) -> None:
        #: The frame's backend call, or its reply when it needed none (an error).
        self.call = call
        #: The turn of the request read before it, if that one is not answered yet.
        self.previous = previous
        #: Done once this frame is answered or given up: the next request's `previous`.
        self.turn = turn
        self.answer = answer
        if isinstance(call, mapping.FrameCall):
            call.future.add_done_callback(self._ready)
        if previous is not None and not previous.done():
            previous.add_done_callback(self._ready)
        self._ready()

    def _ready(self, _: object = None) -> None:
        call = self.call
        if (
            self.turn.done()
            or (isinstance(call, mapping.FrameCall) and not call.future.done())
            or (self.previous is not None and not self.previous.done())
        ):
            return
        self.answer(self)

    def reply(self) -> mapping.Reply | None:
        """The frame's reply; None when it was given up."""
        call = self.call
        if not isinstance(call, mapping.FrameCall):
            return call
        return None if call.future.cancelled() else call.reply()

    def give_up(self) -> None:
        """Cancel its backend call (the dispatcher gives the frame up)."""
        if isinstance(self.call, mapping.FrameCall):
            self.call.give_up()
            future = self.call.future
            if not future.cancel() and not future.cancelled():
                # Answered, but never to be sent: its error is taken as read, which asyncio would log.
                future.exception()


class ConnectionHandler:
    """Serves one WebSocket connection from its first message to its close."""

    __slots__ = (
        "_deadline",
        "_frames",
        "_last",
        "_reader",
        "_reading",
        "_sessions",
        "_slots",
        "_state",
        "_stopping",
        "_tasks",
        "_throttle",
        "_v2_infers",
        "is_v2",
        "ws",
    )

    def __init__(self, state: ProxyState, ws: ProxyConnection) -> None:
        self.ws = ws
        self.is_v2 = ws.subprotocol == v2.SUBPROTOCOL
        self._state = state
        self._slots = asyncio.Semaphore(state.settings.max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        # v1: the turn of the latest request (its task, or its `_FrameReply.turn`) until it is answered,
        # which the next one waits for; dropped then, so that an idle connection keeps neither a frame
        # nor a finished task.
        self._last: asyncio.Future[None] | None = None
        # v1 frames answered without a task of their own, until they are.
        self._frames: set[_FrameReply] = set()
        self._v2_infers: dict[int, asyncio.Task[None]] = {}
        self._sessions: dict[int, tuple[SpeakSession, asyncio.Task[None]]] = {}
        self._reader: asyncio.Task[Any] | None = None
        self._reading = False
        self._stopping = False
        self._deadline = 0.0
        # None while no rate limit applies, so that an unlimited connection pays nothing per message.
        self._throttle: Throttle | None = None

    async def run(self) -> None:
        """Serve the connection; returns when it is closed (or drained and closed by `stop`)."""
        limits = self._state.limits
        address = self._client_address()
        mapping.serve_connection(address, v1=not self.is_v2)
        try:
            throttle = limits.open(address)
        except TooManyConnectionsError as exc:
            self._state.metrics.refused_connections.inc()
            await self.ws.close(CloseCode.TRY_AGAIN_LATER, str(exc))
            return
        self._throttle = throttle if throttle.limited else None
        self._reader = asyncio.current_task()
        self.ws.on_lost = self.abort
        try:
            await self._read()
            if self._stopping:
                await self._drain()
        finally:
            limits.close(throttle)
            self.ws.on_lost = None
            self.abort()

    def _client_address(self) -> str:
        header = self._state.settings.client_address_header
        forwarded = self.ws.request.headers.get(header) if header and self.ws.request is not None else None
        return client_address(self.ws.remote_address, forwarded)

    def abort(self) -> None:
        """Cancel every request and session of the connection (its gRPC calls with them)."""
        for task in list(self._tasks):
            task.cancel()
        for frame in list(self._frames):
            frame.give_up()
            self._frame_done(frame)

    def stop(self, deadline: float) -> None:
        """Shutdown: stop reading now, finish what was read by `deadline` (loop time), close with 1001."""
        self._stopping = True
        self._deadline = deadline
        if self._reading and self._reader is not None:
            # Cancelling recv() loses no message: an unread one stays unread (websockets documents it).
            self._reader.cancel()

    async def _read(self) -> None:
        ws = self.ws
        slots = self._slots
        self._reading = True
        try:
            while not self._stopping:
                await slots.acquire()
                try:
                    if self._throttle is not None:
                        await self._wait_turn(self._throttle)
                    message = await ws.recv()
                except BaseException:
                    slots.release()
                    raise
                started = time.perf_counter()
                if self.is_v2:
                    if isinstance(message, str):
                        self._spawn(self._unordered(mapping.json_message, message, started))
                    else:
                        await self._v2_message(message, started)
                elif isinstance(message, str):
                    self._spawn(self._ordered(mapping.json_message, message, started, self._last))
                else:
                    self._frame(message, started)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # stop() interrupted the read; the handler goes on to drain.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            self._reading = False

    async def _wait_turn(self, throttle: Throttle) -> None:
        """Hold the next read back while the connection or its client address is over its rate."""
        delay = throttle.reserve(time.monotonic())
        if delay > 0:
            self._state.metrics.throttled.inc()
            await asyncio.sleep(delay)

    def _spawn(self, work: Coroutine[Any, Any, None], request: bool = True) -> asyncio.Task[None]:
        """Run `work` as a task of this connection; a request holds its slot until the task is done."""
        if request:
            self._state.admit()  # before the task is made: it inherits the decision with the context
        task = self.ws.loop.create_task(work)
        self._tasks.add(task)
        if request:
            # A done callback, not a finally: a task cancelled before its first step runs no finally.
            task.add_done_callback(self._request_done)
        else:
            task.add_done_callback(self._tasks.discard)
        if not self.is_v2:
            self._last = task
        return task

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last is task:
            self._last = None
        self._state.inflight -= 1
        self._slots.release()

    async def _reply(self, work: Work, message: Any, started: float) -> mapping.Reply:
        try:
            return await work(self._state, message, started)
        except Exception:
            # A bug, not a client or backend failure: the client still gets an answer.
            logger.exception("unexpected failure serving a request")
            return json_messages.error_reply("INTERNAL", "the proxy failed to serve this request")

    async def _ordered(
        self, work: Work, message: Any, started: float, previous: asyncio.Future[None] | None
    ) -> None:
        reply = await self._reply(work, message, started)
        if previous is not None and not previous.done():
            # Earlier tasks raise nothing but CancelledError, and only when the whole connection is
            # cancelled, this task included; a frame's turn never fails.
            await previous
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_reply(reply)

    async def _unordered(self, work: Work, message: Any, started: float) -> None:
        reply = await self._reply(work, message, started)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_reply(reply)

    # --- v1 frames without a task ------------------------------------------------------------------

    def _frame(self, message: bytes, started: float) -> None:
        """A v1 binary frame, answered from its backend call's done callback rather than by a task of
        its own (docs/performance.md); its span, while tracing is on, ends with its reply."""
        self._state.admit()
        turn: asyncio.Future[None] = self.ws.loop.create_future()
        frame = _FrameReply(
            mapping.start_v1_frame(self._state, message, started), self._last, turn, self._answer
        )
        if not turn.done():
            self._frames.add(frame)
            self._last = turn

    def _answer(self, frame: _FrameReply) -> None:
        """Write a frame's reply, its turn come. A text reply, or a peer that stopped taking data,
        needs awaiting: a task then finishes the frame, which keeps its slot until the peer has."""
        try:
            reply = frame.reply()
        except Exception:
            logger.exception("unexpected failure serving a request")
            reply = json_messages.error_reply("INTERNAL", "the proxy failed to serve this request")
        if reply is None:
            self._frame_done(frame)
            return
        sent = self.ws.send_now(reply)
        if sent and not self.ws.paused:
            self._frame_done(frame)
            return
        task = self.ws.loop.create_task(self._finish_sending(reply, sent))
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._frame_done(frame)

        task.add_done_callback(done)

    async def _finish_sending(self, reply: mapping.Reply, sent: bool) -> None:
        with contextlib.suppress(ConnectionClosed):
            if sent:
                await self.ws.drain()
            else:
                await self.ws.send(reply)

    def _frame_done(self, frame: _FrameReply) -> None:
        """A frame is answered or given up: the next request's turn, and its slot free again."""
        if frame.turn.done():
            return
        frame.turn.set_result(None)
        self._frames.discard(frame)
        if self._last is frame.turn:
            self._last = None
        self._state.inflight -= 1
        self._slots.release()

    # --- v2 ----------------------------------------------------------------------------------------

    def _in_use(self, request_id: int) -> bool:
        return request_id in self._v2_infers or request_id in self._sessions

    async def _v2_message(self, data: bytes, started: float) -> None:
        """Dispatch one v2 binary message; an INFER keeps the slot taken for it, others give it back."""
        try:
            message = v2.decode_client(data)
        except ProtocolError as exc:
            self._slots.release()
            self._state.metrics.requests.inc((mapping.INVALID, exc.code))
            mapping.log_failure(mapping.INVALID, exc.code, exc.message, None, None)
            rid = exc.request_id if isinstance(exc.request_id, int) else 0
            await self.ws.send(v2.encode_error(rid, exc.code, exc.message))
            return
        if isinstance(message, v2.InferRequest) and not self._in_use(message.request_id):
            task = self._spawn(self._v2_infer(message, started))
            self._v2_infers[message.request_id] = task
            return
        self._slots.release()
        reply = await self._v2_control(message)
        if reply is not None:
            await self.ws.send(reply)

    async def _v2_control(self, message: v2.ClientMessage) -> bytes | None:
        """Handle a v2 message that is not a new INFER; the immediate reply, if any."""
        rid = message.request_id
        if isinstance(message, v2.InferRequest | v2.SessionStart) and self._in_use(rid):
            return v2.encode_error(rid, "INVALID_ARGUMENT", f"request id {rid} is already in flight")
        match message:
            case v2.Cancel():
                return self._cancel(rid)
            case v2.SessionStart():
                return self._start_session(message)
        session = self._sessions.get(rid, (None,))[0]
        if session is None:
            if isinstance(message, v2.Credit | v2.KeyFrameRequest):
                return None  # It may have crossed the session's SESSION_END.
            return v2.encode_error(rid, "FAILED_PRECONDITION", f"no session {rid} is open")
        try:
            match message:
                case v2.SessionAudio():
                    await session.add_audio(message.pcm16)
                case v2.SessionControl():
                    session.control(message.action)
                case v2.Credit():
                    session.grant(message.credits)
                case v2.KeyFrameRequest():
                    session.request_key_frame()
        except SessionError as exc:
            return v2.encode_error(rid, exc.code, exc.message)
        return None

    def _cancel(self, rid: int) -> bytes | None:
        task = self._v2_infers.pop(rid, None)
        if task is not None:
            task.cancel()
            return v2.encode_error(rid, "CANCELLED", CLIENT_CANCELLED)
        session, session_task = self._sessions.pop(rid, (None, None))
        if session is not None and session_task is not None and not session.ended:
            session.ended = True
            session_task.cancel()
            return v2.encode_session_end(rid, "CANCELLED", CLIENT_CANCELLED)
        # Its reply may have crossed the CANCEL on the wire.
        return None

    def _start_session(self, start: v2.SessionStart) -> bytes | None:
        if len(self._sessions) >= MAX_SESSIONS_PER_CONNECTION:
            return v2.encode_session_end(
                start.request_id,
                "RESOURCE_EXHAUSTED",
                f"a connection may have {MAX_SESSIONS_PER_CONNECTION} sessions open at once",
            )
        if self._state.inflight >= self._state.settings.max_inflight_total:
            # A session is not a request: at the cap, there is no room for it either.
            error = mapping.overloaded_error(self._state)
            return v2.encode_session_end(start.request_id, error.code, error.message)
        session = SpeakSession(self._state, start, self.ws.send)
        self._sessions[start.request_id] = (session, self._spawn(self._session(session), request=False))
        return None

    async def _v2_infer(self, request: v2.InferRequest, started: float) -> None:
        rid = request.request_id
        try:
            reply = await self._reply(mapping.v2_infer, request, started)
        finally:
            if self._v2_infers.get(rid) is asyncio.current_task():
                # From here on a CANCEL finds nothing to cancel: the reply is on its way.
                del self._v2_infers[rid]
        if isinstance(reply, str):
            reply = v2.encode_error(rid, "INTERNAL", "the proxy failed to serve this request")
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_reply(reply)

    async def _session(self, session: SpeakSession) -> None:
        state = self._state
        state.sessions += 1
        started = time.perf_counter()
        try:
            code = await session.run()
            state.metrics.requests.inc(("v2_session", code))
        except ConnectionClosed:
            pass
        finally:
            state.sessions -= 1
            state.metrics.latency.observe(("v2_session",), time.perf_counter() - started)
            state.metrics.count_session(session.frames_requested, session.frames_delivered)
            if self._sessions.get(session.id, (None,))[0] is session:
                del self._sessions[session.id]

    # --- shutdown ----------------------------------------------------------------------------------

    async def _drain(self) -> None:
        for session, _ in self._sessions.values():
            session.finish_speaking()
        pending: set[asyncio.Future[None]] = set(self._tasks)
        pending.update(frame.turn for frame in self._frames)
        timeout = max(0.0, self._deadline - asyncio.get_running_loop().time())
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        self.abort()
        await self.ws.close(CloseCode.GOING_AWAY, "server shutting down")
