"""A `Speak` session: audio chunks in, one frame per 1/fps of audio out, paced to real time.

The template frame walks forward from `start_frame_id` and back at either end of the video (as the
SyncTalk_2D reference does), so a long utterance never runs off the video. An INTERRUPT drops the audio
not yet turned into frames; END (or the client half-closing) finishes the audio that was sent.

An engine with a `speech_stream` (unet328: each frame hears 0.45 s of audio past its instant) gets the
session's audio as one stream, and a frame leaves once the audio it hears has arrived; other engines
(sprite) get each frame's own 1/fps of audio.

A session may instead play the package's own audio track (`SpeakStart.play`): frames start_frame_id
to the last, paced at the model's fps. Either kind may deliver its frames as video (`video_codecs`,
see video_stream.py); a video or play session drops a frame that would leave more than a frame
interval late while later frames are ready, instead of sending a backlog late. A caller that sets
`SpeakStart.credits` (the proxy, for its viewers' credits) has a frame that is due while it has no
credit dropped before it is rendered, so a viewer that falls behind skips frames instead of queueing
them in the transport.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_server.audio import SAMPLE_RATE
from lipsync_server.convert import error_response, infer_response
from lipsync_server.core import ServerCore
from lipsync_server.engines.base import SpeechStream
from lipsync_server.errors import InvalidArgumentError, LipsyncError
from lipsync_server.mel import pcm16_to_float
from lipsync_server.registry import ReadyModel
from lipsync_server.render import AudioInput, RenderRequest
from lipsync_server.video_stream import VideoStream

# Audio a session may hold that has not become frames yet; a client sending faster is refused.
MAX_BUFFERED_S = 30.0


# What one frame is rendered from: its own chunk of PCM16 audio, or features from the stream.
FrameSource = bytes | NDArray[np.float32]


def template_walk(start: int, count: int) -> Callable[[], int]:
    """Frame ids start, start+1, …, count-1, count-2, …, 0, 1, … (ping-pong)."""
    position = start
    step = 1

    def next_frame() -> int:
        nonlocal position, step
        current = position
        if count > 1:
            if not 0 <= position + step < count:
                step = -step
            position += step
        return current

    return next_frame


@dataclass
class SpeakSession:
    core: ServerCore
    model: ReadyModel
    start_message: pb.SpeakStart
    template: RenderRequest
    samples_per_frame: int
    next_template: Callable[[], int]
    audio: bytearray = field(default_factory=bytearray)
    ended: bool = False
    interrupted: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stream: SpeechStream | None = None
    # Video output, when the client asked for a codec the server has; JPEG frames otherwise.
    video: VideoStream | None = None
    # Responses the caller can take now; None when it set no credits.
    credits: int | None = None

    @classmethod
    def start(
        cls, core: ServerCore, start: pb.SpeakStart, to_render: Callable[[pb.InferRequest], RenderRequest]
    ) -> SpeakSession:
        rate = start.sample_rate or SAMPLE_RATE
        if rate != SAMPLE_RATE:
            raise InvalidArgumentError(f"sample_rate {rate} is not supported; send 16000 Hz PCM16 mono")
        model = core.model(start.model_name)
        core.check_frame(start.model_name, model, start.start_frame_id)
        template = to_render(
            pb.InferRequest(
                model_name=start.model_name,
                frame_id=start.start_frame_id,
                output_mode=start.output_mode,
                jpeg_quality=start.jpeg_quality,
            )
        )
        return cls(
            core=core,
            start_message=start,
            template=template,
            samples_per_frame=round(rate / model.package.fps),
            next_template=template_walk(start.start_frame_id, model.package.frame_count),
            model=model,
            stream=None if start.play else model.engine.speech_stream(model.package),
            video=VideoStream.negotiate(core, start.model_name, model.package, list(start.video_codecs)),
            credits=start.credits if start.HasField("credits") else None,
        )

    def _take_credit(self) -> bool:
        """Spend a credit for the next response; False (the frame is dropped) when there is none."""
        if self.credits is None:
            return True
        if self.credits <= 0:
            return False
        self.credits -= 1
        return True

    async def _read(self, requests: AsyncIterator[pb.SpeakRequest]) -> None:
        try:
            async for message in requests:
                kind = message.WhichOneof("kind")
                if kind == "credit":
                    if self.credits is not None:
                        self.credits += message.credit
                    continue
                if kind == "control" and message.control.action == pb.SpeakControl.ACTION_KEY_FRAME:
                    if self.video is not None:
                        self.video.request_key_frame()
                    continue
                if kind == "audio" and (self.start_message.play or self.ended):
                    raise InvalidArgumentError(
                        "a play session plays the package's audio; it takes none"
                        if self.start_message.play
                        else "audio after ACTION_END"
                    )
                if kind == "audio":
                    if len(message.audio) % 2:
                        raise InvalidArgumentError("audio chunk has an odd byte count; send PCM16")
                    if len(self.audio) + len(message.audio) > MAX_BUFFERED_S * SAMPLE_RATE * 2:
                        raise InvalidArgumentError(f"more than {MAX_BUFFERED_S:g} s of audio is waiting")
                    self.audio += message.audio
                elif kind == "control" and message.control.action == pb.SpeakControl.ACTION_INTERRUPT:
                    self.audio.clear()
                    self.interrupted = True
                elif kind == "control" and message.control.action == pb.SpeakControl.ACTION_END:
                    if self.credits is None:
                        break
                    # A caller with credits keeps granting them (and may ask for key frames) while
                    # the frames of its audio are sent.
                    self.ended = True
                else:
                    raise InvalidArgumentError(f"unexpected Speak message {kind!r} after SpeakStart")
                self.changed.set()
        finally:
            self.ended = True
            self.changed.set()

    async def run(self, requests: AsyncIterator[pb.SpeakRequest]) -> AsyncIterator[pb.SpeakResponse]:
        if self.start_message.play:
            async for response in self._play(requests):
                yield response
            return
        reader = asyncio.create_task(self._read(requests))
        frame_bytes = self.samples_per_frame * 2
        fps = SAMPLE_RATE / self.samples_per_frame
        sequence = 0
        paced_from = time.monotonic()
        spoken_since_end = False
        # Frames whose audio has arrived, in order; the stream (if any) is finished once it is drained.
        ready: deque[FrameSource] = deque()
        finished = False
        try:
            while True:
                if self.interrupted:
                    self.interrupted = False
                    ready.clear()
                    if self.stream is not None:
                        self.stream = self.model.engine.speech_stream(self.model.package)
                    finished = False
                    if spoken_since_end and self._take_credit():
                        # One closed-mouth frame (silence) ends the interrupted utterance.
                        yield await self._frame(sequence, bytes(frame_bytes), end=True)
                        sequence += 1
                    spoken_since_end = False
                    continue
                if not ready and (len(self.audio) >= frame_bytes or (self.ended and self.audio)):
                    chunk = bytes(self.audio[:frame_bytes]).ljust(frame_bytes, b"\0")
                    del self.audio[:frame_bytes]
                    ready.extend(await self._sources(chunk))
                    continue
                if not ready and self.ended and not self.audio and self.stream is not None and not finished:
                    finished = True
                    ready.extend(await self.core.runner.call(self.stream.finish))
                    continue
                if ready:
                    source = ready.popleft()
                    last = self.ended and not self.audio and not ready and (self.stream is None or finished)
                    # Real-time pacing: frame n leaves no earlier than n/fps after the first.
                    delay = paced_from + sequence / fps - time.monotonic()
                    backlog = bool(ready) or len(self.audio) >= frame_bytes
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif self.video is not None and backlog and -delay > 1 / fps and not last:
                        sequence += 1  # dropped: its place in the audio stays, the video skips it
                        continue
                    else:
                        paced_from -= delay  # a late frame restarts the clock instead of bursting
                    if not self._take_credit():
                        sequence += 1
                        spoken_since_end = not last
                        continue
                    yield await self._frame(sequence, source, end=last)
                    sequence += 1
                    spoken_since_end = not last
                    continue
                if self.ended:
                    if reader.done():
                        await reader  # re-raise a protocol error from the reader, if any
                    return
                self.changed.clear()
                await self.changed.wait()
        finally:
            reader.cancel()

    async def _play(self, requests: AsyncIterator[pb.SpeakRequest]) -> AsyncIterator[pb.SpeakResponse]:
        """Frames start_frame_id ... frame_count - 1 with the package's own audio, one per 1/fps; a
        frame more than an interval late is dropped. Ends after the last frame or an INTERRUPT."""
        reader = asyncio.create_task(self._read(requests))
        package = self.model.package
        first, last = self.start_message.start_frame_id, package.frame_count - 1
        started = time.monotonic()
        try:
            for frame_id in range(first, last + 1):
                if reader.done() and reader.exception() is not None:
                    await reader  # a protocol error ends the call with its status
                if self.interrupted:
                    return
                delay = started + (frame_id - first) / package.fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif -delay > 1 / package.fps and frame_id != last:
                    continue
                if not self._take_credit():
                    continue
                yield await self._frame(
                    frame_id - first, None, end=frame_id == last, frame_id=frame_id,
                    audio_time_ms=frame_id * 1000 / package.fps,
                )  # fmt: skip
        finally:
            reader.cancel()

    async def _sources(self, chunk: bytes) -> list[FrameSource]:
        """The frames one chunk of audio completes: itself, or those of the stream that became ready."""
        if self.stream is None:
            return [chunk]
        pcm = np.frombuffer(chunk, dtype="<i2").astype(np.int16, copy=False)
        return list(await self.core.runner.call(self.stream.push, pcm16_to_float(pcm)))

    async def _frame(
        self,
        sequence: int,
        source: FrameSource | None,
        *,
        end: bool,
        frame_id: int | None = None,
        audio_time_ms: float | None = None,
    ) -> pb.SpeakResponse:
        """Frame `sequence` from `source` (None: the package's own audio for `frame_id`)."""
        if frame_id is None:
            frame_id = self.next_template()
        if audio_time_ms is None:
            audio_time_ms = sequence * 1000 * self.samples_per_frame / SAMPLE_RATE
        audio, features = None, None
        if isinstance(source, bytes):
            pcm = np.frombuffer(source, dtype="<i2").astype(np.int16, copy=False)
            audio = AudioInput(pcm, SAMPLE_RATE, len(pcm) // 2)
        else:
            features = source
        request = RenderRequest(
            frame_id=frame_id,
            output_mode=self.template.output_mode,
            jpeg_quality=self.template.jpeg_quality,
            audio=audio,
            features=features,
        )
        infer = pb.InferRequest(
            request_id=self.start_message.request_id,
            model_name=self.start_message.model_name,
            frame_id=frame_id,
        )
        try:
            if self.video is not None:
                return await self.video.response(request, audio_time_ms, end=end)
            (frame,) = await self.core.render(self.start_message.model_name, [request])
            response = infer_response(infer, request.output_mode, frame)
        except LipsyncError as error:
            response = error_response(infer, error)
        return pb.SpeakResponse(
            sequence=sequence, audio_time_ms=audio_time_ms, frame=response, end_of_utterance=end
        )
