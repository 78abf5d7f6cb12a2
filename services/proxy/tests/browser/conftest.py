"""Fixtures of the browser tests: headless Chromium, and the real proxy serving static/ in front of the
real lip-sync server (its demo avatar).

Playwright's sync API runs its own event loop, so it lives for one test module at a time (never
across the asyncio tests of other modules); the server and the proxy are processes and live for the
session. Every test leaves a full-page screenshot in ``artifacts/browser/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..processes import ProxyProcess, ServerProcess
from .harness import (
    ARTIFACTS,
    IN_CI,
    STATIC_DIR,
    Browser,
    ClientPage,
    Page,
    Playwright,
    Route,
    ViewportSize,
    chromium_missing,
    launch_chromium,
    start_client_proxy,
    sync_playwright,
)

# The origin of `modules_page`; port 9 is "discard", should anything ever get past the route.
MODULES_ORIGIN = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright, started for one test module."""
    problem = chromium_missing()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"the browser tests must run in CI: {problem}")
        pytest.skip(problem)
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium for one test module."""
    browser = launch_chromium(playwright)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def modules_page(browser: Browser) -> Iterator[Page]:
    """A blank page that can import the client's modules (``await import('/js/protocol.js')``).

    Its origin is answered from Python: the blank page itself (a test page, not part of static/)
    and static/'s files. No server runs and nothing reaches the network.
    """
    context = browser.new_context()
    page = context.new_page()
    page.route(f"{MODULES_ORIGIN}/**", _serve_static)
    page.goto(f"{MODULES_ORIGIN}/blank.html")
    try:
        yield page
    finally:
        context.close()


def _serve_static(route: Route) -> None:
    path = route.request.url.removeprefix(MODULES_ORIGIN).split("?", 1)[0]
    if path == "/blank.html":
        route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>module tests</title>")
        return
    file = (STATIC_DIR / path.lstrip("/")).resolve()
    if file.is_relative_to(STATIC_DIR) and file.is_file():
        route.fulfill(status=200, content_type="text/javascript", body=file.read_bytes())
    else:
        route.fulfill(status=404, body="not found")


@pytest.fixture(scope="session")
def client_proxy(real_server: ServerProcess, logs_dir: Path) -> Iterator[ProxyProcess]:
    """The real proxy serving the browser client, in front of the real server."""
    process = start_client_proxy(real_server, logs_dir)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(browser: Browser, request: pytest.FixtureRequest) -> Iterator[ClientPage]:
    """A fresh browser context and page at desktop size (not yet opened); screenshotted at the end."""
    yield from _client_page(browser, request, DESKTOP)


@pytest.fixture
def phone_client(browser: Browser, request: pytest.FixtureRequest) -> Iterator[ClientPage]:
    """As `client`, on a phone-sized touch screen."""
    yield from _client_page(browser, request, {"width": 390, "height": 844}, phone=True)


@pytest.fixture
def tls_client(browser: Browser, request: pytest.FixtureRequest) -> Iterator[ClientPage]:
    """As `client`, trusting the test's self-signed TLS certificate."""
    yield from _client_page(browser, request, DESKTOP, self_signed_tls=True)


DESKTOP: ViewportSize = {"width": 1280, "height": 900}


def _client_page(
    browser: Browser,
    request: pytest.FixtureRequest,
    viewport: ViewportSize,
    phone: bool = False,
    self_signed_tls: bool = False,
) -> Iterator[ClientPage]:
    context = browser.new_context(
        viewport=viewport, is_mobile=phone, has_touch=phone, ignore_https_errors=self_signed_tls
    )
    try:
        yield ClientPage(context.new_page())
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
        try:
            context.pages[0].screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
