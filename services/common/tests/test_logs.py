"""The log lines both services write: JSON with the documented keys and the ids of the current span."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from lipsync_common.logs import JsonFormatter, TraceContextFilter, setup_logging


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, restored after the test."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield root
    root.handlers[:], root.level = saved


def configured(root: logging.Logger, log_format: str) -> io.StringIO:
    """Set logging up as an entry point does, with its handler writing into a buffer."""
    setup_logging("info", log_format)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    return buffer


def test_json_logging_is_set_up_with_the_trace_filter(root_logging: logging.Logger) -> None:
    setup_logging("info", "json")
    (handler,) = root_logging.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert any(isinstance(f, TraceContextFilter) for f in handler.filters)
    assert root_logging.level == logging.INFO


def test_a_json_line_has_the_documented_keys_and_formats(root_logging: logging.Logger) -> None:
    buffer = configured(root_logging, "json")
    logging.getLogger("lipsync_proxy.test").warning("backend %s: %s", "b1", "NOT_SERVING")
    entry = json.loads(buffer.getvalue())
    assert list(entry) == ["time", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert entry["level"] == "warning"
    assert (entry["logger"], entry["message"]) == ("lipsync_proxy.test", "backend b1: NOT_SERVING")


def test_a_json_line_in_a_span_carries_its_trace_and_span_ids(root_logging: logging.Logger) -> None:
    buffer = configured(root_logging, "json")
    with TracerProvider().get_tracer("test").start_as_current_span("call") as span:
        logging.getLogger("lipsync_server.render").warning("frame %d late", 7)
    entry = json.loads(buffer.getvalue())
    context = span.get_span_context()
    assert (entry["trace_id"], entry["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert entry["message"] == "frame 7 late"


def test_a_json_line_outside_any_span_has_no_ids(root_logging: logging.Logger) -> None:
    buffer = configured(root_logging, "json")
    logging.getLogger("lipsync_server").warning("starting")
    entry = json.loads(buffer.getvalue())
    assert "trace_id" not in entry
    assert "span_id" not in entry


def test_an_exception_is_logged_with_its_traceback(root_logging: logging.Logger) -> None:
    buffer = configured(root_logging, "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("lipsync_proxy.connection").exception("unexpected failure")
    entry = json.loads(buffer.getvalue())
    assert entry["level"] == "error"
    assert "ValueError: boom" in entry["exception"]


def test_text_lines_stay_text(root_logging: logging.Logger) -> None:
    buffer = configured(root_logging, "text")
    logging.getLogger("lipsync_proxy.app").info("listening")
    assert buffer.getvalue().rstrip().endswith("INFO lipsync_proxy.app: listening")
