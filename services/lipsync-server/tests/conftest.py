"""Fixtures shared by the lipsync-server tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test helper modules (server_process, package_factory) live beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from server_process import ServerProcess


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory per test session, so the demo avatar is generated once."""
    return tmp_path_factory.mktemp("lipsync-cache")


@pytest.fixture(scope="session")
def demo_server(demo_cache: Path) -> Iterator[ServerProcess]:
    """A real lipsync-server serving the demo avatar, shared by the read-only integration tests."""
    server = ServerProcess(["--grace-period", "1"], demo_cache).start()
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()
