"""The package's audio, played in sync with the frames, on the real page against the real proxy.

Most tests answer the page's JSON ``get_audio`` with a double (page_doubles.answer_get_audio), to
choose the audio; the last one takes it from the real proxy. How the page keeps the audio with the
frames (a seek or a faster rate for which drift) is checked exactly in test_package_audio_module.py,
on an element whose clock the test runs: here the browser's real audio clock keeps time only as long
as the machine gives its audio thread the CPU.
"""

from __future__ import annotations

import statistics

import pytest

from ..processes import ProxyProcess
from .harness import ClientPage, client_url, expect
from .page_doubles import answer_get_audio, tone_wav

pytestmark = pytest.mark.integration

#: How far the audio may typically be from the frame on screen. (One sample may be further off: on
#: a loaded machine a frame can be shown late while the audio plays on, as it should.)
MAX_OFFSET_S = 0.1


def audio_offset(client: ClientPage) -> float:
    """Seconds between the audio's position and the frame on screen (frame id / 25 fps)."""
    offset: float = client.page.evaluate(
        """() => {
            const audio = document.getElementById('package-audio');
            const frame = Number(document.getElementById('badge-frame').textContent.replace('frame ', ''));
            return audio.currentTime - frame / 25;
        }"""
    )
    return offset


def wait_for_frame(client: ClientPage, frame_id: int) -> None:
    """Wait until the frame on screen is `frame_id` or later."""
    client.page.wait_for_function(
        """(frameId) => Number(
            document.getElementById('badge-frame').textContent.replace('frame ', '')) >= frameId""",
        arg=frame_id,
    )


def test_the_package_audio_plays_in_sync_with_the_frames(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    answer_get_audio(page, tone_wav(12.0))
    client.open(client_url(client_proxy))
    expect(page.locator("#meta-audio")).to_contain_text("plays in sync")
    expect(page.locator("#sound-button")).to_be_enabled()

    page.locator("#frame-slider").fill("100")
    expect(page.locator("#badge-frame")).to_have_text("frame 100")
    page.click("#play-button")
    page.wait_for_function("() => !document.getElementById('package-audio').paused")
    # Settled after 25 frames; then a sample every 5 frames (200 ms at 25 FPS).
    shown = 100
    offsets = []
    for step in (25, 5, 5, 5, 5, 5, 5):
        shown += step
        wait_for_frame(client, shown)
        offsets.append(audio_offset(client))
    page.click("#play-button")

    assert statistics.median(abs(offset) for offset in offsets) < MAX_OFFSET_S, offsets
    page.wait_for_function("() => document.getElementById('package-audio').paused")
    assert client.errors == []


def test_sound_off_keeps_the_frames_playing_silently(client: ClientPage, client_proxy: ProxyProcess) -> None:
    page = client.page
    answer_get_audio(page, tone_wav(12.0))
    client.open(client_url(client_proxy))
    expect(page.locator("#sound-button")).to_be_enabled()

    page.click("#sound-button")
    page.click("#play-button")
    client.wait_for_number("m-frames", 20)
    page.click("#play-button")

    expect(page.locator("#sound-button")).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("() => document.getElementById('package-audio').paused")


def test_a_proxy_without_package_audio_plays_frames_silently_and_says_so(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    answer_get_audio(page, None)
    client.open(client_url(client_proxy))

    expect(page.locator("#meta-audio")).to_contain_text("not served by this proxy")
    expect(page.locator("#sound-button")).to_be_disabled()
    page.click("#play-button")
    client.wait_for_number("m-frames", 20)
    page.click("#play-button")

    expect(page.locator("#error-banner")).to_be_hidden()
    assert client.number("m-errors") == 0
    assert client.errors == []


def test_the_real_proxy_serves_the_package_audio(client: ClientPage, client_proxy: ProxyProcess) -> None:
    page = client.page
    client.open(client_url(client_proxy))

    expect(page.locator("#meta-audio")).to_contain_text("plays in sync", timeout=3000)
