"""The page's video output in headless Chromium: the real page, proxy and server (the demo avatar)."""

from __future__ import annotations

import time

import pytest

from ..processes import TIME_UNIT, ProxyProcess
from .harness import ClientPage, client_url, expect

pytestmark = pytest.mark.integration


def test_the_page_plays_video_at_25_fps_under_the_bitrate_target(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))

    page.click("#play-button")
    expect(page.locator("#badge-delivery")).to_have_text("video H.264")
    client.wait_for_number("m-frames", 25)
    started, first = time.monotonic(), client.number("m-frames")
    client.wait_for_number("m-frames", first + 75)
    elapsed = time.monotonic() - started
    fps = client.number("m-fps")
    kbits = client.number("m-bitrate")
    page.click("#play-button")

    assert 20 <= fps <= 27
    assert (client.number("m-frames") - first) / elapsed == pytest.approx(25, abs=4)
    assert kbits <= 300, "steady-state bit rate above the 0.3 Mbit/s target"
    assert "Base video of demo: H.264" in client.log_text()
    assert client.number("m-errors") == 0
    assert client.errors == []
