"""The page's video output in headless Chromium: the real page, proxy and server (the demo avatar)."""

from __future__ import annotations

import base64
import json
import time

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from websockets.sync.client import connect

from lipsync_common.waiting import TIME_UNIT

from ..processes import ProxyProcess
from .harness import ARTIFACTS, ClientPage, client_url, expect
from .page_doubles import drop_video_chunk, strip_video_request

pytestmark = pytest.mark.integration


def test_the_page_plays_video_at_25_fps_under_the_bitrate_target(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open_with_base_video(client_url(client_proxy))

    page.click("#play-button")
    expect(page.locator("#badge-delivery")).to_have_text("video H.264")
    client.wait_for_number("m-frames", client.number("m-frames") + 50)  # the rate meter's 2 s of video
    started, first = time.monotonic(), client.number("m-frames")
    client.wait_for_number("m-frames", first + 75)
    elapsed = time.monotonic() - started
    fps = client.number("m-fps")
    kbits = client.number("m-bitrate")
    page.click("#play-button")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "video-playback.json").write_text(json.dumps({"fps": fps, "kbit_per_s": kbits}) + "\n")
    assert 20 <= fps <= 27
    assert (client.number("m-frames") - first) / elapsed == pytest.approx(25, abs=4)
    assert kbits <= 300, "steady-state bit rate above the 0.3 Mbit/s target"
    assert "Base video of demo: H.264" in client.log_text()
    assert client.number("m-errors") == 0
    assert client.errors == []


def server_composite(
    proxy: ProxyProcess, frame_id: int
) -> tuple[NDArray[np.uint8], tuple[int, int, int, int]]:
    """The server's full JPEG composite of `frame_id` (decoded, BGR) and its face box."""
    request = {
        "type": "inference",
        "id": 1,
        "model_name": "demo",
        "frame_id": frame_id,
        "include_image": True,
    }
    with connect(proxy.ws_url) as ws:
        ws.send(json.dumps(request))
        reply = json.loads(ws.recv(timeout=10 * TIME_UNIT))
    image = cv2.imdecode(np.frombuffer(base64.b64decode(reply["image_base64"]), np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(image, dtype=np.uint8), tuple(reply["bounds"])


def canvas_box(client: ClientPage, box: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """The canvas's pixels over `box`, BGR."""
    x1, y1, x2, y2 = box
    rgba = client.page.evaluate(
        """([x, y, w, h]) => Array.from(
            document.getElementById('frame-canvas').getContext('2d').getImageData(x, y, w, h).data)""",
        [x1, y1, x2 - x1, y2 - y1],
    )
    pixels = np.asarray(rgba, dtype=np.uint8).reshape(y2 - y1, x2 - x1, 4)
    return np.ascontiguousarray(pixels[:, :, 2::-1])


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255**2 / mse))


def test_the_composited_canvas_matches_the_servers_jpeg_over_the_face_box(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open_with_base_video(client_url(client_proxy))
    scores = {}
    for _ in range(4):
        shown = client.number("m-frames")
        page.click("#play-button")
        expect(page.locator("#badge-delivery")).to_have_text("video H.264")
        client.wait_for_number("m-frames", shown + 20)
        page.click("#play-button")
        expect(page.locator("#play-label")).to_have_text("Play")
        frame_id = int(client.number("badge-frame"))
        reference, box = server_composite(client_proxy, frame_id)
        x1, y1, x2, y2 = box
        scores[frame_id] = psnr(canvas_box(client, box), reference[y1:y2, x1:x2])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "video-canvas-psnr.json").write_text(json.dumps(scores, indent=2) + "\n")
    assert min(scores.values()) >= 35, scores
    assert client.errors == []


def test_a_dropped_chunk_makes_the_page_ask_for_a_key_frame_and_play_on(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    key_frame_requests = drop_video_chunk(client.page, after=30)
    page = client.page
    client.open_with_base_video(client_url(client_proxy))

    page.click("#play-button")
    client.wait_for_number("m-frames", 30)
    shown = client.number("m-frames")
    client.wait_for_number("m-frames", shown + 25)
    page.click("#play-button")

    assert len(key_frame_requests) == 1
    assert "a chunk was lost; asked for a key frame" in client.log_text()
    assert client.number("m-errors") == 0
    assert client.errors == []


def test_the_page_plays_jpeg_frames_when_the_server_sends_no_video(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    strip_video_request(client.page)
    page = client.page
    client.open_with_base_video(client_url(client_proxy))

    page.click("#play-button")
    expect(page.locator("#badge-delivery")).to_have_text("JPEG (no common codec)")
    client.wait_for_number("m-frames", 30)
    page.click("#play-button")

    assert client.number("m-errors") == 0
    assert client.errors == []


def test_without_webcodecs_the_page_requests_jpeg_frames(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    client.page.add_init_script("delete window.VideoDecoder")
    page = client.page
    client.open(client_url(client_proxy))

    page.click("#play-button")
    expect(page.locator("#badge-delivery")).to_have_text("JPEG")
    client.wait_for_number("m-frames", 30)
    page.click("#play-button")

    assert "Playing demo from frame 0 at 25 FPS (full frame)" in client.log_text()
    assert client.errors == []
