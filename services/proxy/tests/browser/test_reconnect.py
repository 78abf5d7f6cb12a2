"""The page across a proxy restart: it shows that it lost the connection, reconnects with backoff,
and plays on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsync_common.waiting import TIME_UNIT

from ..processes import ProxyProcess, ServerProcess
from .harness import ClientPage, client_url, expect, start_client_proxy

pytestmark = pytest.mark.integration


@pytest.fixture
def own_proxy(real_server: ServerProcess, logs_dir: Path) -> Iterator[list[ProxyProcess]]:
    """A proxy of this test's own, which it may stop and start again on the same port; the list
    holds the running one last."""
    processes = [start_client_proxy(real_server, logs_dir)]
    try:
        yield processes
    finally:
        processes[-1].stop()


def test_the_page_reconnects_after_the_proxy_restarts_and_plays_on(
    own_proxy: list[ProxyProcess], client: ClientPage, real_server: ServerProcess, logs_dir: Path
) -> None:
    page = client.page
    proxy = own_proxy[0]
    client.open(client_url(proxy))
    page.click("#play-button")
    expect(page.locator("#play-label")).to_have_text("Stop")

    assert proxy.stop() == 0
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#connection-text")).to_contain_text("Reconnecting")
    expect(page.locator("#play-label")).to_have_text("Play")
    own_proxy.append(start_client_proxy(real_server, logs_dir, port=proxy.port))

    # Backoff after a few failed attempts is at most a few seconds.
    expect(page.locator("#connection-status")).to_have_attribute(
        "data-state", "open", timeout=20_000 * TIME_UNIT
    )
    expect(page.locator("#model-input")).to_have_value("demo")
    expect(page.locator("#activity-log")).to_contain_text("Resuming playback")
    shown = client.number("m-frames")
    page.wait_for_timeout(600)
    assert client.number("m-frames") > shown + 5
    log = client.log_text()
    assert "Connection lost" in log
    assert log.count("Connected to ") == 2
