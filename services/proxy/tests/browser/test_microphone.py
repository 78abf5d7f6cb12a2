"""The live microphone mode: PCM16 16 kHz streamed over a lipsync.v2 session, frames shown as they
come back, as JPEG frames or, where WebCodecs decodes H.264, as video. Chromium's fake capture device
(a beep) stands in for a microphone."""

from __future__ import annotations

import json

import pytest

from lipsync_common.waiting import TIME_UNIT

from ..processes import ProxyProcess
from .harness import ARTIFACTS, ClientPage, client_url, expect
from .page_doubles import drop_video_chunk, refuse_microphone

pytestmark = pytest.mark.integration

#: How far behind the audio that made it a frame may be shown (typically ~150 ms here: the audio comes
#: in 100-ms chunks): frames that queue up, or wait for a clock, fall further behind the longer one speaks.
MAX_LAG_MS = 1000 * TIME_UNIT


def capture_to_display(client: ClientPage, delivery: str) -> tuple[float, float]:
    """The latency tiles' p50 and p95 (ms from the audio's capture to its frame on screen), also
    written to artifacts/browser/microphone-latency-`delivery`.json."""
    median, p95 = client.number("m-p50"), client.number("m-p95")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"microphone-latency-{delivery}.json"
    path.write_text(json.dumps({"p50_ms": median, "p95_ms": p95}) + "\n")
    return median, p95


def test_without_webcodecs_the_microphone_streams_to_a_session_and_its_jpeg_frames_are_shown(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    client.page.add_init_script("delete window.VideoDecoder")
    page = client.page
    client.open(client_url(client_proxy))
    first = client.canvas_digest()
    shown = client.number("m-frames")

    page.click("#mic-button")
    expect(page.locator("#badge-live")).to_be_visible()
    expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#activity-log")).to_contain_text("Live: streaming")
    client.wait_for_number("m-frames", shown + 75)
    live_digest = client.canvas_digest()
    median, p95 = capture_to_display(client, "jpeg")
    page.click("#mic-button")

    expect(page.locator("#activity-log")).to_contain_text("Live session ended")
    expect(page.locator("#badge-live")).to_be_hidden()
    expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "false")
    assert live_digest != first
    assert page.locator("#badge-delivery").inner_text() == "JPEG"
    assert page.locator("#m-latency").inner_text().endswith("ms")
    assert 0 < median <= p95 <= MAX_LAG_MS, (median, p95)
    assert client.number("m-errors") == 0
    assert client.errors == []


def test_the_microphone_mode_shows_video_in_step_with_the_audio(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open_with_base_video(client_url(client_proxy))
    first = client.canvas_digest()
    shown = client.number("m-frames")

    page.click("#mic-button")
    expect(page.locator("#badge-delivery")).to_have_text("video H.264")
    client.wait_for_number("m-frames", shown + 75)  # 3 s: the rate meter's 2 s in video
    live_digest = client.canvas_digest()
    median, p95 = capture_to_display(client, "video")
    kbits = client.number("m-bitrate")
    page.click("#mic-button")

    expect(page.locator("#activity-log")).to_contain_text("Live session ended")
    assert "Video output: H.264" in client.log_text()
    assert live_digest != first
    assert 0 < median <= p95 <= MAX_LAG_MS, (median, p95)
    assert kbits <= 300, "video frames, not JPEGs (those take several Mbit/s)"
    assert client.number("m-errors") == 0
    assert client.errors == []


def test_a_chunk_lost_in_the_microphone_mode_brings_a_key_frame_and_the_video_goes_on(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    key_frame_requests = drop_video_chunk(client.page, after=30)
    page = client.page
    client.open_with_base_video(client_url(client_proxy))

    page.click("#mic-button")
    client.wait_for_number("m-frames", 30)
    shown = client.number("m-frames")
    client.wait_for_number("m-frames", shown + 25)
    page.click("#mic-button")

    expect(page.locator("#activity-log")).to_contain_text("Live session ended")
    assert len(key_frame_requests) == 1
    assert "a chunk was lost; asked for a key frame" in client.log_text()
    assert page.locator("#badge-delivery").inner_text() == "video H.264"
    assert client.number("m-errors") == 0
    assert client.errors == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("NotAllowedError", "Microphone permission was refused"),
        ("NotFoundError", "No microphone was found"),
    ],
)
def test_a_missing_or_refused_microphone_is_explained(
    client: ClientPage, client_proxy: ProxyProcess, error: str, message: str
) -> None:
    page = client.page
    refuse_microphone(page, error)
    client.open(client_url(client_proxy))

    page.click("#mic-button")

    expect(page.locator("#mic-message")).to_be_visible()
    expect(page.locator("#mic-message")).to_contain_text(message)
    expect(page.locator("#badge-live")).to_be_hidden()
    expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "false")
    assert client.errors == []
