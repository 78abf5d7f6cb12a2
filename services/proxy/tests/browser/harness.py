"""What the browser tests share: Debian's headless Chromium driven by Playwright, and a handle on the page.

Playwright is imported here and re-exported, so that a machine without it skips these tests with a
reason, and CI (``CI=true``), where nothing may be skipped, fails instead. ``playwright install`` is
never needed: the tests launch the system's Chromium (``/usr/bin/chromium``, or ``$LIPSYNC_CHROMIUM``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lipsync_common.waiting import TIME_UNIT, wait_until

from ..processes import ProxyProcess, ServerProcess

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

try:
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Page,
        Playwright,
        Route,
        ViewportSize,
        WebSocketRoute,
        expect,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - depends on the machine
    if IN_CI:
        raise
    pytest.skip("Playwright is not installed (pip install -r requirements-dev.txt)", allow_module_level=True)

__all__ = [
    "ARTIFACTS",
    "IN_CI",
    "REPO",
    "STATIC_DIR",
    "TIME_UNIT",
    "Browser",
    "ClientPage",
    "Page",
    "Playwright",
    "Route",
    "ViewportSize",
    "WebSocketRoute",
    "chromium_missing",
    "client_url",
    "expect",
    "launch_chromium",
    "start_client_proxy",
    "sync_playwright",
]

REPO = Path(__file__).resolve().parents[4]
#: The browser client under test.
STATIC_DIR = REPO / "static"
#: Screenshots of every browser test, kept by CI as artefacts (ignored by git).
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = Path(os.environ.get("LIPSYNC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (a beep) that needs no permission prompt, for the live microphone mode.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
#: Playwright's waits, in milliseconds.
TIMEOUT_MS = 10_000 * TIME_UNIT


def chromium_missing() -> str | None:
    """Why Chromium cannot be launched here, or None when it can."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set LIPSYNC_CHROMIUM)"
    return None


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium with a fresh profile (Playwright makes a new one per launch)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def start_client_proxy(server: ServerProcess, logs_dir: Path, port: int | None = None) -> ProxyProcess:
    """The real proxy serving static/ on `port` (a free one when None), once it sees `server` SERVING."""
    args = ["--static-dir", str(STATIC_DIR), "--quiet-frames"]
    process = (
        ProxyProcess(logs_dir, grpc_addr=server.address, args=args)
        if port is None
        else ProxyProcess(logs_dir, port=port, grpc_addr=server.address, args=args)
    )
    process.start().wait_ready(20 * TIME_UNIT)
    wait_until(lambda: process.health().status == 200, 20 * TIME_UNIT, "the proxy's /health 200")
    return process


def client_url(proxy: ProxyProcess, path: str = "/") -> str:
    """The client page as `proxy` serves it."""
    return f"http://127.0.0.1:{proxy.port}{path}"


@dataclass
class ClientPage:
    """The client page in one fresh browser context, with what it wrote to the console."""

    page: Page
    #: Console errors and uncaught exceptions, as text.
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def open(self, url: str) -> None:
        """Load the client and wait until it has connected and chosen a model."""
        self.page.goto(url)
        self.wait_ready()

    def open_with_base_video(self, url: str) -> None:
        """Load the client and wait for the base video it fetches when the model is chosen (a Play or
        a microphone session before it is here gets JPEG frames)."""
        self.open(url)
        expect(self.page.locator("#activity-log")).to_contain_text("Base video of ")

    def wait_ready(self) -> None:
        """Wait until the page is connected with a model chosen (Play is enabled)."""
        expect(self.page.locator("#connection-status")).to_have_attribute("data-state", "open")
        expect(self.page.locator("#play-button")).to_be_enabled()

    def number(self, element_id: str) -> float:
        """A metric tile's number ("24.5", "7.7 ms", "12" → 24.5, 7.7, 12)."""
        text = self.page.locator(f"#{element_id}").inner_text()
        match = re.search(r"-?\d+(\.\d+)?", text)
        assert match is not None, f"#{element_id} shows no number: {text!r}"
        return float(match.group())

    def wait_for_number(self, element_id: str, at_least: float) -> None:
        """Wait until a metric tile shows `at_least` (tiles refresh four times a second)."""
        self.page.wait_for_function(
            "([id, least]) => parseFloat(document.getElementById(id).textContent) >= least",
            arg=[element_id, at_least],
        )

    def canvas_digest(self) -> str:
        """A digest of the frame canvas's pixels, to tell whether the picture changed."""
        digest: str = self.page.evaluate(
            """async () => {
                const canvas = document.getElementById('frame-canvas');
                const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                const hash = await crypto.subtle.digest('SHA-256', pixels);
                return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, '0')).join('');
            }"""
        )
        return digest

    def log_text(self) -> str:
        """The activity log's text."""
        return self.page.locator("#activity-log").inner_text()
