"""A session's video output: each frame's crop window, composited and encoded by the session's encoder.

The engine renders the face region (OutputMode.VIDEO: pixels, not a JPEG); the window around it is the
base frame with the region pasted in, encoded in a worker thread. The stream opens with a VideoConfig
and a key frame, and sends both again after the client asks (ACTION_KEY_FRAME); the encoder adds key
frames of its own at a bounded interval (video.KEY_FRAME_INTERVAL_S).
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import cast

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_server.core import ServerCore
from lipsync_server.packages.model import ModelPackage
from lipsync_server.render import OutputMode, RenderedFrame, RenderRequest
from lipsync_server.video import (
    CODECS,
    EncodedChunk,
    VideoCodec,
    VideoEncoder,
    available_codecs,
    composite_window,
    crop_size,
    crop_window,
    negotiate,
)


@functools.cache
def server_codecs() -> tuple[VideoCodec, ...]:
    """The codecs this server's PyAV build encodes, in its order of preference (looked up once)."""
    return available_codecs()


class VideoStream:
    """The encoder of one session and what it has sent; frames are encoded one at a time, in order."""

    def __init__(self, core: ServerCore, model_name: str, package: ModelPackage, codec: VideoCodec) -> None:
        self._core = core
        self._model_name = model_name
        self._package = package
        self.codec = codec
        self.size = crop_size(package.boxes, package.width, package.height, CODECS[codec].block)
        self._encoder: VideoEncoder | None = None
        self._config_due = True
        # Chunks sent: their sequence numbers have no gaps, so a client that sees one lost a chunk.
        self._chunks = 0

    @classmethod
    def negotiate(
        cls, core: ServerCore, model_name: str, package: ModelPackage, offered: list[int]
    ) -> VideoStream | None:
        """A stream in the server's preferred codec among `offered`; None when none is common (or
        nothing was offered): the session then sends JPEG frames."""
        codec = negotiate(offered, server_codecs())
        return None if codec is None else cls(core, model_name, package, codec)

    def request_key_frame(self) -> None:
        """ACTION_KEY_FRAME: the next chunk is a key frame, after a VideoConfig."""
        self._config_due = True

    def config(self) -> pb.VideoConfig:
        width, height = self.size
        return pb.VideoConfig(
            codec=cast(pb.VideoCodec, int(self.codec)),
            codec_string=CODECS[self.codec].codec_string,
            width=width,
            height=height,
            description=b"",
        )

    async def response(self, request: RenderRequest, audio_time_ms: float, *, end: bool) -> pb.SpeakResponse:
        """Render, composite and encode one frame; raises the render's LipsyncError. The response's
        sequence numbers the chunks sent, without gaps."""
        (frame,) = await self._core.render(self._model_name, [replace(request, output_mode=OutputMode.VIDEO)])
        key_frame = self._config_due
        window, chunk, composite_ms, encode_ms = await self._core.runner.call(
            self._encode, request.frame_id, frame, audio_time_ms, key_frame
        )
        self._config_due = False
        chunk_number, self._chunks = self._chunks, self._chunks + 1
        stages = frame.timings
        total_ms = stages.audio_features_ms + stages.inference_ms + composite_ms + encode_ms
        response = pb.SpeakResponse(
            sequence=chunk_number,
            audio_time_ms=audio_time_ms,
            end_of_utterance=end,
            video_chunk=pb.VideoChunk(
                frame_id=request.frame_id,
                key_frame=chunk.key_frame,
                bounds=pb.Bounds(x1=window[0], y1=window[1], x2=window[2], y2=window[3]),
                data=chunk.data,
                timings=pb.Timings(
                    audio_features_ms=stages.audio_features_ms,
                    inference_ms=stages.inference_ms,
                    composite_ms=composite_ms,
                    encode_ms=encode_ms,
                    total_ms=total_ms,
                    batch_size=stages.batch_size,
                ),
            ),
        )
        if key_frame:
            response.video_config.CopyFrom(self.config())
        return response

    def _encode(
        self, frame_id: int, frame: RenderedFrame, time_ms: float, key_frame: bool
    ) -> tuple[tuple[int, int, int, int], EncodedChunk, float, float]:
        """In a worker thread: the window's pixels and their chunk, with the milliseconds of each."""
        package = self._package
        if self._encoder is None:
            self._encoder = VideoEncoder(self.codec, *self.size, package.fps)
        assert frame.pixels is not None  # OutputMode.VIDEO always has them
        start = time.perf_counter()
        window = crop_window(frame.bounds, self.size, package.width, package.height)
        pixels = composite_window(package.frames.frame(frame_id), window, frame.bounds, frame.pixels)
        composed = time.perf_counter()
        chunk = self._encoder.encode(pixels, time_ms, key_frame=key_frame)
        done = time.perf_counter()
        return window, chunk, (composed - start) * 1000, (done - composed) * 1000
