"""Logging set up once, by a service's entry point: human-readable text or one JSON object per line.

A JSON line has the keys and formats docs/observability.md ("Logs") lists: `time` (UTC, to the
millisecond, with `Z`), `level` (lower case), `logger`, `message`, `trace_id` and `span_id` of the span
current where the record was made (inside a traced request), `exception`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import trace

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `trace_id`/`span_id` appear when a record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("trace_id", "span_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TraceContextFilter(logging.Filter):
    """Adds the current span's `trace_id` and `span_id` (lowercase hex, as in `traceparent`) to a record.

    Runs in the thread that logs, so it sees that thread's context: the request's span on the event
    loop; in a worker thread, a span only where the caller's context was carried into the thread
    (lipsync-server's InferenceRunner.call does).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


def setup_logging(level: str, log_format: str) -> None:
    """Send the root logger's records to stderr at `level` in `log_format` (text or json), replacing
    any handler set before."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(TraceContextFilter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
