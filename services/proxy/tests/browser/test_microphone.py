"""The live microphone mode: PCM16 16 kHz streamed over a lipsync.v2 session, frames shown as they
come back. Chromium's fake capture device (a beep) stands in for a microphone."""

from __future__ import annotations

import pytest

from ..processes import ProxyProcess
from .harness import ClientPage, client_url, expect
from .page_doubles import refuse_microphone

pytestmark = pytest.mark.integration


def test_the_microphone_streams_to_a_session_and_its_frames_are_shown(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))
    first = client.canvas_digest()
    shown = client.number("m-frames")

    page.click("#mic-button")
    expect(page.locator("#badge-live")).to_be_visible()
    expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#activity-log")).to_contain_text("Live: streaming")
    client.wait_for_number("m-frames", shown + 25)
    live_digest = client.canvas_digest()
    page.click("#mic-button")

    expect(page.locator("#activity-log")).to_contain_text("Live session ended")
    expect(page.locator("#badge-live")).to_be_hidden()
    expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "false")
    assert live_digest != first
    assert page.locator("#m-latency").inner_text().endswith("ms")
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
