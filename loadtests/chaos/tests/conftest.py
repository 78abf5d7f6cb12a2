"""Fixtures of the fault suite: where the processes log, the demo avatar's cache, and the figures.

Every timeout is a multiple of lipsync_common.waiting.TIME_UNIT, as in the services' tests;
the measured figures are written to `artifacts/chaos/results.json` (or $CHAOS_RESULTS) at the end.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.processes import REPO

RESULTS = Path(os.environ.get("CHAOS_RESULTS", REPO / "artifacts" / "chaos" / "results.json"))

_figures: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chaos-logs")


@pytest.fixture(scope="session")
def demo_cache() -> Path:
    """Where the real servers generate the demo avatar, kept between runs: generating it takes seconds."""
    path = REPO / "artifacts" / "chaos" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The figures of the running test, kept (whether it passes or not) under its name."""
    figures: dict[str, Any] = {}
    started = time.monotonic()
    yield figures
    figures["test_seconds"] = round(time.monotonic() - started, 1)
    # Teardown runs after the call's report, which has set "passed" already.
    _figures.setdefault(request.node.name, {})["figures"] = figures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call":
        _figures.setdefault(item.name, {"figures": {}})["passed"] = report.passed
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _figures:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "faults": _figures,
    }
    RESULTS.write_text(json.dumps(summary, indent=2, default=str) + "\n")
