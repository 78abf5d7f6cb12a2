"""Fixtures for the load-test tooling's tests: real processes on free loopback ports, external tools.

A missing external tool (k6, nginx, openssl) skips its tests on a developer machine and fails them in
CI (CI=true), where nothing that should run may be skipped."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from loadtests.processes import BIN, BackendProcess, ProxyProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, how: str) -> NoReturn:
    reason = f"{what} is not installed ({how})"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def tool(name: str, how: str) -> str:
    """The path of an external tool: the virtualenv's, the PATH's, or /usr/sbin's (nginx)."""
    for candidate in (BIN / name, shutil.which(name), Path("/usr/sbin") / name):
        if candidate is not None and Path(candidate).exists():
            return str(candidate)
    missing(name, how)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackendProcess, ProxyProcess]]:
    """The benchmark backend (5 ms per frame) and a real lipsync-proxy in front of it."""
    logs = tmp_path_factory.mktemp("loadtest-processes")
    with (
        BackendProcess(logs, delay_ms=5.0) as backend,
        ProxyProcess(logs, grpc_addr=backend.address) as proxy,
    ):
        yield backend, proxy
