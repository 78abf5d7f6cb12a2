"""Fixtures shared by the proxy's tests: processes started once per session on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsync_common.waiting import TIME_UNIT, wait_until

from .processes import DoubleProcess, ProxyProcess, ServerProcess


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the processes' output goes (shown when one fails to start)."""
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def static_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static directory with an index, a script, a subdirectory, a dotfile and a way out (a symlink)."""
    root = tmp_path_factory.mktemp("static")
    (root / "index.html").write_text("<!doctype html><title>client</title>")
    (root / "app.js").write_text("console.log('client');")
    (root / "assets").mkdir()
    (root / "assets" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / ".env").write_text("SECRET=1")
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("secret")
    (root / "escape.txt").symlink_to(outside)
    return root


@pytest.fixture(scope="session")
def double(logs_dir: Path) -> Iterator[DoubleProcess]:
    """The shared fake backend: frame f takes f ms, so replies can complete out of order."""
    process = DoubleProcess(logs_dir, delay_ms_per_frame=1.0)
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def proxy(double: DoubleProcess, logs_dir: Path, static_dir: Path) -> Iterator[ProxyProcess]:
    """The shared proxy in front of `double`, serving `static_dir`, once it sees the backend SERVING."""
    process = ProxyProcess(logs_dir, grpc_addr=double.address, args=["--static-dir", str(static_dir)])
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        wait_until(lambda: process.health().status == 200, 10 * TIME_UNIT, "the proxy's /health 200")
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the real servers generate the demo avatar: once per test session."""
    return tmp_path_factory.mktemp("lipsync-cache")


@pytest.fixture(scope="session")
def real_server(logs_dir: Path, demo_cache: Path) -> Iterator[ServerProcess]:
    """The real lipsync-server with its demo avatar (1280x720)."""
    process = ServerProcess(logs_dir, cache_dir=demo_cache)
    process.start().wait_ready(120 * TIME_UNIT)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def real_proxy(real_server: ServerProcess, logs_dir: Path) -> Iterator[ProxyProcess]:
    """A proxy in front of the real server, with default settings."""
    process = ProxyProcess(logs_dir, grpc_addr=real_server.address)
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        yield process
    finally:
        process.stop()
