"""static/js/protocol.js's video messages and static/js/video.js's base video parser, in Chromium,
against the proxy's Python codec and the server's base video writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lipsync_protocol import v2
from lipsync_protocol.fields import Bounds, OutputMode
from lipsync_server.base_video import encode_base_video
from lipsync_server.packages.model import ArrayFrames, ModelPackage
from lipsync_server.video import VideoCodec

from .harness import Page
from .test_protocol_module import CODEC, js_bytes

pytestmark = pytest.mark.integration
WINDOW = Bounds(528, 168, 720, 376)


def js_decode_video(page: Page, data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        f"""async (bytes) => {{
            {CODEC}
            const message = codec.decodeServerMessage(new Uint8Array(bytes));
            const out = {{ ...message }};
            for (const key of ['data', 'description']) if (key in out) out[key] = Array.from(out[key]);
            return out;
        }}""",
        list(data),
    )
    return result


def test_a_video_play_session_start_and_a_key_frame_request_are_the_python_encoding(
    modules_page: Page,
) -> None:
    start = js_bytes(
        modules_page,
        "codec.encodeSessionStart(arg)",
        {
            "requestId": 9,
            "modelName": "demo",
            "startFrameId": 3,
            "credits": 12,
            "videoCodecs": [1, 2],
            "play": True,
        },
    )
    key_frame = js_bytes(modules_page, "codec.encodeKeyFrame(9)")

    expected = v2.SessionStart(
        9, "demo", 3, OutputMode.FULL_FRAME, 0, 12, None, (v2.VideoCodec.H264, v2.VideoCodec.VP8), True
    )
    assert start == v2.encode_client(expected)
    assert key_frame == v2.encode_client(v2.KeyFrameRequest(9))


def test_video_configs_and_chunks_decode_to_their_fields(modules_page: Page) -> None:
    config = js_decode_video(
        modules_page, v2.encode_video_config(8, v2.VideoCodec.VP9, "vp09.00.10.08", 192, 256, b"\x01")
    )
    chunk = js_decode_video(
        modules_page, v2.encode_video_chunk(8, 5, 200.0, True, True, 5, WINDOW, b"\x00\x01\x02")
    )

    assert config == {
        "kind": "video_config", "requestId": 8, "codec": 3, "codecString": "vp09.00.10.08",
        "width": 192, "height": 256, "description": [1],
    }  # fmt: skip
    assert chunk == {
        "kind": "video_chunk", "requestId": 8, "sequence": 5, "audioTimeMs": 200.0, "keyFrame": True,
        "endOfUtterance": True, "frameId": 5, "bounds": {"x1": 528, "y1": 168, "x2": 720, "y2": 376},
        "data": [0, 1, 2],
    }  # fmt: skip


def test_the_page_parses_the_servers_base_video_file(modules_page: Page) -> None:
    frames = np.zeros((30, 48, 64, 3), np.uint8)
    frames[:, :, :, 1] = np.arange(30, dtype=np.uint8)[:, None, None] * 8
    package = ModelPackage(
        name="tiny", engine="sprite", format="lipsync-package/1", root=Path("."), fps=25.0,
        frames=ArrayFrames(frames), boxes=np.tile(np.array([[8, 8, 40, 40]], np.int32), (30, 1)),
    )  # fmt: skip
    data = encode_base_video(package, VideoCodec.H264)

    parsed = modules_page.evaluate(
        """async (bytes) => {
            const video = await import('/js/video.js');
            const file = video.parseBaseVideo(new Uint8Array(bytes));
            return { ...file, chunks: file.chunks.map((c) => [c.key, c.data.length]) };
        }""",
        list(data),
    )

    assert (parsed["codec"], parsed["codecString"], parsed["width"], parsed["height"]) == (
        1,
        "avc1.42e01f",
        64,
        48,
    )
    assert parsed["fps"] == 25.0
    assert len(parsed["chunks"]) == 30
    assert parsed["chunks"][0][0] is True
    assert [size > 0 for _, size in parsed["chunks"]] == [True] * 30


PLAY_THREE_CHUNKS = """async (paced) => {
    const video = await import('/js/video.js');
    const session = new EventTarget();
    const granted = [];
    session.grant = (n) => granted.push(n);
    session.requestKeyFrame = () => {};
    // A decoder double: each chunk is "decoded" at once into a picture of its timestamp.
    class Decoder {
        constructor({ output }) { this.output = output; }
        configure(config) { Decoder.config = config; }
        decode(chunk) { this.output({ timestamp: chunk.timestamp, close() {} }); }
        close() {}
    }
    const shown = [];
    const sleeps = [];
    const player = new video.VideoSessionPlayer({
        session, paced, Decoder,
        base: { frame: async () => ({ close() {} }) },
        present: (crop, base, chunk) => shown.push(chunk.frameId),
        now: () => 1000,
        sleep: async (ms) => { sleeps.push(ms); },
    });
    const description = new Uint8Array();
    session.dispatchEvent(new CustomEvent('video_config', {
        detail: { codecString: 'avc1.42e01f', width: 32, height: 32, description } }));
    for (let i = 0; i < 3; i += 1) {
        const detail = {
            sequence: i, keyFrame: i === 0, frameId: 10 + i, audioTimeMs: 40 * i, data: new Uint8Array(1) };
        session.dispatchEvent(new CustomEvent('video_chunk', { detail }));
    }
    await player.chain;
    return { shown, sleeps, granted: granted.length, lowDelay: Decoder.config.optimizeForLatency };
}"""


@pytest.mark.parametrize(("paced", "sleeps"), [(True, [40, 80]), (False, [])])
def test_a_paced_player_holds_pictures_to_the_session_clock_and_an_unpaced_one_shows_them_at_once(
    modules_page: Page, paced: bool, sleeps: list[int]
) -> None:
    played = modules_page.evaluate(PLAY_THREE_CHUNKS, paced)

    assert played == {"shown": [10, 11, 12], "sleeps": sleeps, "granted": 3, "lowDelay": True}
