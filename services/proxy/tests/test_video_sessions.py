"""v2 video and play sessions through the real proxy and the real server (demo avatar)."""

from __future__ import annotations

import asyncio
import http.client

import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.waiting import TIME_UNIT
from lipsync_protocol import v2

from .processes import ProxyProcess

pytestmark = pytest.mark.integration
H264 = v2.VideoCodec.H264
# The demo has 300 frames at 25 fps; a play session from here lasts 1.2 s.
LATE_START = 270


async def until_end(
    ws: ClientConnection, messages: list[v2.ServerMessage] | None = None
) -> list[v2.ServerMessage]:
    messages = [] if messages is None else messages
    while not messages or not isinstance(messages[-1], v2.SessionEnd):
        data = await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)
        assert isinstance(data, bytes)
        messages.append(v2.decode_server(data))
    return messages


def h264() -> VideoCodecContext:
    context = av.CodecContext.create("h264", "r")
    assert isinstance(context, VideoCodecContext)
    return context


async def test_a_play_session_sends_a_config_then_decodable_chunks_then_ends_ok(
    real_proxy: ProxyProcess,
) -> None:
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        start = v2.SessionStart(5, "demo", LATE_START, credits=1000, video_codecs=(H264,), play=True)
        await ws.send(v2.encode_client(start))
        messages = await until_end(ws)

    config, *chunks, end = messages
    assert isinstance(config, v2.VideoConfig)
    assert (config.codec, config.codec_string) == (H264, "avc1.42e01f")
    assert end == v2.SessionEnd(5, "OK", "")
    assert all(isinstance(chunk, v2.VideoChunk) for chunk in chunks)
    video = [chunk for chunk in chunks if isinstance(chunk, v2.VideoChunk)]
    frame_ids = [chunk.frame_id for chunk in video]
    # A frame a loaded machine renders more than an interval late is dropped, never the last.
    assert frame_ids == sorted(set(frame_ids))
    assert (frame_ids[0], frame_ids[-1]) == (LATE_START, 299)
    assert video[0].key_frame
    decoder = h264()
    for chunk in video:
        (frame,) = decoder.decode(av.Packet(chunk.data))
        assert (frame.width, frame.height) == (config.width, config.height)
        assert (chunk.bounds.x2 - chunk.bounds.x1, chunk.bounds.y2 - chunk.bounds.y1) == (
            config.width,
            config.height,
        )
    assert video[-1].end_of_utterance


async def test_a_key_frame_request_is_answered_with_a_config_and_a_key_frame(
    real_proxy: ProxyProcess,
) -> None:
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        start = v2.SessionStart(6, "demo", 200, credits=1000, video_codecs=(H264,), play=True)
        await ws.send(v2.encode_client(start))
        messages: list[v2.ServerMessage] = []
        while len([m for m in messages if isinstance(m, v2.VideoChunk)]) < 3:
            messages.append(v2.decode_server(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)))  # type: ignore[arg-type]
        await ws.send(v2.encode_client(v2.KeyFrameRequest(6)))
        while len([m for m in messages if isinstance(m, v2.VideoConfig)]) < 2:
            messages.append(v2.decode_server(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)))  # type: ignore[arg-type]
        after = v2.decode_server(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))  # type: ignore[arg-type]
        await ws.send(v2.encode_client(v2.Cancel(6)))

    assert isinstance(after, v2.VideoChunk)
    assert after.key_frame
    assert not any(m.key_frame for m in messages[2:] if isinstance(m, v2.VideoChunk))


async def test_a_viewer_without_credits_gets_no_backlog_only_the_end(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        start = v2.SessionStart(7, "demo", LATE_START, credits=2, video_codecs=(H264,), play=True)
        await ws.send(v2.encode_client(start))
        messages = await until_end(ws)

    # The track played on without the viewer: the frames it had no credit for were never made.
    assert [type(m) for m in messages] == [v2.VideoConfig, v2.VideoChunk, v2.VideoChunk, v2.SessionEnd]
    assert messages[-1] == v2.SessionEnd(7, "OK", "")


async def test_a_play_session_refuses_audio_and_control_and_plays_on(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(8, "demo", 290, credits=1000, play=True)))
        await ws.send(v2.encode_client(v2.SessionAudio(8, b"\x00\x00")))
        await ws.send(v2.encode_client(v2.SessionControl(8, v2.SessionAction.END)))
        messages = await until_end(ws)

    errors = [m for m in messages if isinstance(m, v2.ErrorReply)]
    assert [e.code for e in errors] == ["FAILED_PRECONDITION"] * 2
    frames = [m for m in messages if isinstance(m, v2.SessionFrame)]
    assert frames[-1].frame_id == 299
    assert frames[0].image[:2] == b"\xff\xd8"
    assert messages[-1] == v2.SessionEnd(8, "OK", "")


async def test_a_speak_session_with_video_sends_chunks_of_the_audio_it_was_sent(
    real_proxy: ProxyProcess,
) -> None:
    tone = (np.sin(np.arange(16_000 // 2) * 2 * np.pi * 220 / 16_000) * 8000).astype("<i2").tobytes()
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(9, "demo", credits=4, video_codecs=(H264,))))
        await ws.send(v2.encode_client(v2.SessionAudio(9, tone)))
        await ws.send(v2.encode_client(v2.SessionControl(9, v2.SessionAction.END)))
        messages: list[v2.ServerMessage] = []
        while not messages or not isinstance(messages[-1], v2.SessionEnd):
            message = v2.decode_server(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))  # type: ignore[arg-type]
            messages.append(message)
            if isinstance(message, v2.VideoChunk):
                # Credits granted after END still reach the server, which sends the rest.
                await ws.send(v2.encode_client(v2.Credit(9, 1)))

    chunks = [m for m in messages if isinstance(m, v2.VideoChunk)]
    assert isinstance(messages[0], v2.VideoConfig)
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].audio_time_ms == 12 * 40, "0.5 s of audio is 12.5 frames: 13, the last one padded"
    assert chunks[-1].end_of_utterance
    assert messages[-1] == v2.SessionEnd(9, "OK", "")


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    # The first request of a model encodes its base video on the server: seconds, on a loaded machine.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120 * TIME_UNIT)
    try:
        connection.request("GET", path, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def test_the_base_video_url_redirects_to_its_version_which_is_cacheable_for_good(
    real_proxy: ProxyProcess,
) -> None:
    status, headers, _ = get(real_proxy.port, "/models/demo/base-video?codec=h264")
    assert status == 307
    assert headers["cache-control"] == "no-cache"
    location = headers["location"]
    assert location.startswith("/models/demo/base-video?codec=h264&v=")

    status, headers, body = get(real_proxy.port, location)

    assert status == 200
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["etag"] == f'"{location.rsplit("=", 1)[1]}"'
    assert body[:4] == b"LSBV"
    assert get(real_proxy.port, location, {"If-None-Match": headers["etag"]})[0] == 304
    assert get(real_proxy.port, location.replace("v=", "v=0"))[2] == b""


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/models/demo/base-video?codec=mjpeg", 400),
        ("/models/demo/base-video", 400),
        ("/models/nobody/base-video?codec=h264", 404),
    ],
)
def test_a_bad_base_video_request_gets_a_clear_status(
    real_proxy: ProxyProcess, path: str, status: int
) -> None:
    assert get(real_proxy.port, path)[0] == status
