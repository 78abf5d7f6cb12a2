"""The seed's realtime page, as a test fixture doing what it did (seed_realtime_page.html), in headless
Chromium through the real proxy to the real server: switch_to_binary, metadata, base frames by binary
get_video_frame, the seed code's binary requests with 24 kHz audio, crops drawn at their bounds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsync_common.waiting import TIME_UNIT, wait_until

from ..processes import ProxyProcess, ServerProcess
from .harness import ClientPage, client_url

pytestmark = pytest.mark.integration

PAGE = Path(__file__).with_name("seed_realtime_page.html")


@pytest.fixture(scope="module")
def seed_page_proxy(
    real_server: ServerProcess, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """A proxy serving the fixture page from a directory of its own, so the page comes from the proxy's
    loopback origin as the seed's did (Chromium lets such a page open a loopback WebSocket; a page
    Playwright made up would be refused by its local network access checks)."""
    static = tmp_path_factory.mktemp("seed-page")
    shutil.copy(PAGE, static / "index.html")
    process = ProxyProcess(
        logs_dir, grpc_addr=real_server.address, args=["--static-dir", str(static), "--quiet-frames"]
    )
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        wait_until(lambda: process.health().status == 200, 20 * TIME_UNIT, "the proxy's /health 200")
        yield process
    finally:
        process.stop()


def test_the_seed_realtime_page_draws_lip_synced_crops_over_binary_base_frames(
    client: ClientPage, seed_page_proxy: ProxyProcess
) -> None:
    page = client.page
    page.goto(client_url(seed_page_proxy))
    seen = page.evaluate("([model, frames]) => window.runSeedPage(model, frames)", ["demo", [30, 30, 31, 31]])

    assert seen["ack"] == {"type": "protocol_ack", "message": "Binary protocol supported"}
    metadata = seen["metadata"]
    assert metadata["success"] is True
    assert metadata["frame_count"] >= 250
    assert metadata["audio_path"]
    drawn = seen["drawn"]
    assert [d["frameId"] for d in drawn] == [30, 30, 31, 31]
    assert [d["baseFrameId"] for d in drawn] == [30, 30, 31, 31]
    assert all(d["videoType"] == "full_body" for d in drawn)
    for frame in drawn:
        x1, y1, x2, y2 = frame["bounds"]
        assert 0 <= x1 < x2 <= 1280
        assert 0 <= y1 < y2 <= 720
        assert frame["cropBytes"] > 1_000
        # The crop covers its box and nothing else: outside it the canvas is the base frame, unchanged.
        assert frame["change"]["outside"] == 0
    # With loud audio (odd entries) the mouth opens: its crop changes the base frame's box far more
    # than the silent one's, which only re-encodes the same face (mean absolute difference, of 255).
    for silent, loud in ((drawn[0], drawn[1]), (drawn[2], drawn[3])):
        assert loud["change"]["inside"] > silent["change"]["inside"] + 1.0
    assert client.errors == []
