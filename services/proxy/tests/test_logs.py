"""The proxy's logging: the shared lines (lipsync_common.logs, tested there), and websockets kept quiet."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from lipsync_common.logs import JsonFormatter
from lipsync_proxy.cli import configure_logging


@pytest.fixture
def saved_logging() -> Iterator[logging.Logger]:
    """The root logger, restored after the test with the websockets logger's level."""
    root, websockets = logging.getLogger(), logging.getLogger("websockets")
    saved = (root.handlers[:], root.level, websockets.level)
    yield root
    root.handlers[:], root.level, websockets.level = saved


def test_the_proxy_writes_the_shared_json_lines(saved_logging: logging.Logger) -> None:
    configure_logging("info", "json")
    (handler,) = saved_logging.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert saved_logging.level == logging.INFO


@pytest.mark.parametrize(("level", "websockets_level"), [("debug", "WARNING"), ("error", "ERROR")])
def test_websockets_logs_warnings_at_the_most_whatever_the_level(
    saved_logging: logging.Logger, level: str, websockets_level: str
) -> None:
    configure_logging(level, "text")
    assert logging.getLevelName(logging.getLogger("websockets").level) == websockets_level
