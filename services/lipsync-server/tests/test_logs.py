from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from span_recording import SpanRecorder

from lipsync_server.logs import JsonFormatter, TraceContextFilter, setup_logging


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines, through the trace filter, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("test_logs.json")
    logger.propagate = False
    logger.addHandler(handler)
    yield logger, buffer
    logger.removeHandler(handler)


def entries(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_json_line_carries_the_trace_and_span_ids_of_the_current_span(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_lines
    with SpanRecorder().provider.get_tracer("test").start_as_current_span("call") as span:
        logger.warning("frame %d late", 7)
    (entry,) = entries(buffer)
    context = span.get_span_context()
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert entry["message"] == "frame 7 late"


def test_a_json_line_outside_any_span_has_no_ids(json_lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_lines
    logger.warning("starting")
    (entry,) = entries(buffer)
    assert "trace_id" not in entry
    assert "span_id" not in entry


def test_json_logging_is_set_up_with_the_trace_filter() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("info", "json")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert any(isinstance(f, TraceContextFilter) for f in handler.filters)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
