"""v2 talking sessions: a `Speak` stream per session, its frames forwarded only against credits.

The client opens a session with SESSION_START (granting its first credits), sends audio with
SESSION_AUDIO, ends or interrupts speech with SESSION_CONTROL and grants more credits with CREDIT.
Each SESSION_FRAME (or per-frame ERROR) the proxy forwards spends one credit; without a credit the
proxy does not read the gRPC stream, so gRPC's flow control holds the server back and nothing piles up
in the proxy. Audio the stream has not taken yet is bounded too: past `MAX_QUEUED_AUDIO_BYTES` the
proxy stops reading the connection until the stream catches up.
Every session ends with exactly one SESSION_END.

A session may ask for video output or play the model's own audio (docs/protocol.md, "Video output"):
the proxy passes the codecs and the play flag to `Speak`, forwards each VIDEO_CONFIG and VIDEO_CHUNK as
the server encoded it, and passes the client's credits and KEY_FRAME requests on, so the server drops
a frame the viewer has no credit for before rendering it instead of queueing it in the transport.
JPEG sessions (neither flag) run exactly as they did: their credits stay in the proxy.

A session counts the frames its audio asked for (each frame the backend streamed, or that frame's
error) and those it delivered; while tracing is on it runs inside its own span, whose context the
`Speak` stream carries to the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import grpc

from lipsync_protocol import v2
from lipsync_protocol.fields import SAMPLE_RATE
from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy import spans
from lipsync_proxy.dispatch import Metadata, traceparent, untraced
from lipsync_proxy.errors import BackendError, ProxyError, status_of_number, wire_code
from lipsync_proxy.mapping import bounds_of, output_mode, proto_mode, timings_of
from lipsync_proxy.state import ProxyState

logger = logging.getLogger(__name__)

#: Audio a session may have waiting for its gRPC stream: about 32 s of 16 kHz PCM16.
MAX_QUEUED_AUDIO_BYTES = 1 << 20

_PROTO_ACTIONS = {
    v2.SessionAction.INTERRUPT: lipsync_pb2.SpeakControl.ACTION_INTERRUPT,
    v2.SessionAction.END: lipsync_pb2.SpeakControl.ACTION_END,
}

Send = Callable[[bytes], Awaitable[None]]


class SessionError(ProxyError):
    """A session message the proxy refuses; answered with an ERROR of the session's id."""


class SpeakSession:
    """One v2 session and its `Speak` stream; `run` is its task, from SESSION_START to SESSION_END."""

    def __init__(self, state: ProxyState, start: v2.SessionStart, send: Send) -> None:
        self.id = start.request_id
        self.start = start
        self.credits = start.credits
        #: Set once SESSION_END is being sent: a CANCEL that arrives later has nothing to cancel.
        self.ended = False
        #: Frames the backend streamed (images or per-frame errors) and images sent to the client.
        self.frames_requested = 0
        self.frames_delivered = 0
        self.sent_bytes = 0
        self._state = state
        self._send = send
        self._credit = asyncio.Event()
        self._outbox: asyncio.Queue[lipsync_pb2.SpeakRequest] = asyncio.Queue()
        # Audio read from the client and not yet taken by the gRPC stream.
        self._queued_bytes = 0
        self._room = asyncio.Event()
        self._audio_closed = False
        self._stream_closed = False
        # Video and play sessions: the server sees the credits too (it drops what cannot be taken).
        self._forwards_credits = bool(start.video_codecs) or start.play

    def grant(self, credits: int) -> None:
        """CREDIT: the client can take `credits` more messages."""
        self.credits += credits
        self._credit.set()
        if self._forwards_credits and not self._stream_closed:
            self._outbox.put_nowait(lipsync_pb2.SpeakRequest(credit=credits))

    def request_key_frame(self) -> None:
        """KEY_FRAME: passed to the server, which answers with a VIDEO_CONFIG and a key frame."""
        if not self._stream_closed:
            action = lipsync_pb2.SpeakControl.ACTION_KEY_FRAME
            self._outbox.put_nowait(lipsync_pb2.SpeakRequest(control=lipsync_pb2.SpeakControl(action=action)))

    def _check_open(self) -> None:
        if self._stream_closed:
            raise SessionError("FAILED_PRECONDITION", f"session {self.id} is not open")
        if self.start.play:
            raise SessionError(
                "FAILED_PRECONDITION",
                f"session {self.id} plays the model's audio; it takes no audio or control",
            )
        if self._audio_closed:
            raise SessionError("FAILED_PRECONDITION", f"session {self.id} has ended its audio")

    async def add_audio(self, pcm16: bytes) -> None:
        """SESSION_AUDIO. While the stream is `MAX_QUEUED_AUDIO_BYTES` behind this waits, so the
        connection is not read; raises SessionError once the session's audio or stream has ended."""
        self._check_open()
        while self._queued_bytes and self._queued_bytes + len(pcm16) > MAX_QUEUED_AUDIO_BYTES:
            self._room.clear()
            await self._room.wait()
            self._check_open()
        self._queued_bytes += len(pcm16)
        self._outbox.put_nowait(lipsync_pb2.SpeakRequest(audio=pcm16))

    def control(self, action: v2.SessionAction) -> None:
        """SESSION_CONTROL: INTERRUPT drops the audio not yet written; END closes the audio."""
        self._check_open()
        if action == v2.SessionAction.INTERRUPT:
            while not self._outbox.empty():
                self._queued_bytes -= len(self._outbox.get_nowait().audio)
            self._room.set()
        else:
            self._audio_closed = True
        request = lipsync_pb2.SpeakRequest(control=lipsync_pb2.SpeakControl(action=_PROTO_ACTIONS[action]))
        self._outbox.put_nowait(request)

    def finish_speaking(self) -> None:
        """End the audio if it is still open (shutdown: let the server finish what it was sent)."""
        if not self._audio_closed and not self._stream_closed and not self.start.play:
            self.control(v2.SessionAction.END)

    async def run(self) -> str:
        """Serve the session until its stream ends; sends its frames and its one SESSION_END, and
        returns the status that ended it ("OK" or a gRPC status name)."""
        start = self.start
        tracer = self._state.tracer
        if tracer is None:
            # The client's trace context goes to the server as it came.
            return await self._serve(self._state.backend.metadata(start.traceparent))
        attributes = spans.frame_attributes(start.model_name, start.start_frame_id, start.output_mode)
        with spans.request_span(
            tracer, "v2_session", time.perf_counter(), start.traceparent, attributes
        ) as span:
            try:
                code = await self._serve(traceparent(span) if span.is_recording() else untraced())
            finally:
                span.set_attributes(
                    {
                        spans.FRAMES_REQUESTED: self.frames_requested,
                        spans.FRAMES_DELIVERED: self.frames_delivered,
                        spans.REPLY_BYTES: self.sent_bytes,
                    }
                )
            spans.set_code(span, code)
            return code

    async def _serve(self, metadata: Metadata | None) -> str:
        try:
            call = await self._state.backend.speak(metadata)
        except BackendError as exc:
            self.ended = True
            await self._send(v2.encode_session_end(self.id, exc.code, exc.message))
            return exc.code
        writer = asyncio.create_task(self._write(call))
        code, message = "OK", ""
        try:
            while True:
                # The server spends a credit-forwarding session's credits itself (and ends the stream
                # when its track ends, credits or not); the proxy gates the others.
                while self.credits <= 0 and not self._forwards_credits:
                    self._credit.clear()
                    await self._credit.wait()
                response = await call.read()
                if not isinstance(response, lipsync_pb2.SpeakResponse):
                    break  # grpc.aio.EOF: the server ended the stream
                self.credits -= 1
                self.frames_requested += 1
                for data in self._encode(response):
                    await self._send(data)
                    self.sent_bytes += len(data)
                if not response.frame.HasField("error"):
                    self.frames_delivered += 1
        except grpc.aio.AioRpcError as exc:
            error = BackendError(exc.code(), exc.details() or "")
            logger.info("session %d ended: %s %s", self.id, exc.code().name, exc.details())
            code, message = error.code, error.message
        finally:
            self._stream_closed = True
            # A SESSION_AUDIO waiting for room wakes up and finds the session closed.
            self._room.set()
            writer.cancel()
            call.cancel()
        self.ended = True
        await self._send(v2.encode_session_end(self.id, code, message))
        return code

    async def _write(
        self, call: grpc.aio.StreamStreamCall[lipsync_pb2.SpeakRequest, lipsync_pb2.SpeakResponse]
    ) -> None:
        start = self.start
        first = lipsync_pb2.SpeakRequest(
            start=lipsync_pb2.SpeakStart(
                request_id=str(self.id),
                model_name=start.model_name,
                output_mode=proto_mode(start.output_mode),
                start_frame_id=start.start_frame_id,
                sample_rate=SAMPLE_RATE,
                jpeg_quality=start.jpeg_quality,
                video_codecs=[cast(lipsync_pb2.VideoCodec, int(codec)) for codec in start.video_codecs],
                play=start.play,
                credits=start.credits if self._forwards_credits else None,
            )
        )
        try:
            await call.write(first)
            while True:
                request = await self._outbox.get()
                # gRPC's flow control holds this write while the server takes no more audio.
                await call.write(request)
                if request.audio:
                    self._queued_bytes -= len(request.audio)
                    self._room.set()
                elif (
                    request.control.action == lipsync_pb2.SpeakControl.ACTION_END
                    and not self._forwards_credits
                ):
                    # A credit-forwarding session keeps writing: its credits and key-frame requests
                    # still matter while the server sends the frames of the audio it has.
                    await call.done_writing()
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The stream has ended; run() reads how and reports it.
            return

    def _encode(self, response: lipsync_pb2.SpeakResponse) -> list[bytes]:
        frame = response.frame
        if frame.HasField("error"):
            code = wire_code(status_of_number(frame.error.code))
            return [v2.encode_error(self.id, code, frame.error.message)]
        if response.HasField("video_chunk"):
            return self._encode_video(response)
        return [
            v2.encode_session_frame(
                self.id,
                response.sequence,
                response.audio_time_ms,
                response.end_of_utterance,
                frame.frame_id,
                output_mode(frame.output_mode, self.start.output_mode),
                bounds_of(frame),
                frame.width,
                frame.height,
                timings_of(frame),
                frame.image,
            )
        ]

    def _encode_video(self, response: lipsync_pb2.SpeakResponse) -> list[bytes]:
        """A VIDEO_CONFIG when the server sent one, then the VIDEO_CHUNK; the chunk's bytes unchanged."""
        messages = []
        if response.HasField("video_config"):
            config = response.video_config
            messages.append(
                v2.encode_video_config(
                    self.id,
                    v2.VideoCodec(config.codec),
                    config.codec_string,
                    config.width,
                    config.height,
                    config.description,
                )
            )
        chunk = response.video_chunk
        box = chunk.bounds
        messages.append(
            v2.encode_video_chunk(
                self.id,
                response.sequence,
                response.audio_time_ms,
                chunk.key_frame,
                response.end_of_utterance,
                chunk.frame_id,
                (box.x1, box.y1, box.x2, box.y2),
                chunk.data,
            )
        )
        return messages
