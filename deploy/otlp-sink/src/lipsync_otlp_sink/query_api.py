"""The HTTP side: read-only JSON queries about the stored spans.

    GET /healthz                              200 "ok"
    GET /api/traces                           {"traces": [{"trace_id", "services", "span_count"}], "count"}
    GET /api/spans[?trace_id=T][&service=S]   {"spans": [{...span record...}], "count"}

Other paths are 404; http.server answers other methods with 501.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from lipsync_otlp_sink.store import SpanStore

logger = logging.getLogger(__name__)


class _QueryHandler(BaseHTTPRequestHandler):
    server: QueryServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        store = self.server.store
        if url.path == "/healthz":
            self._reply(HTTPStatus.OK, b"ok\n", "text/plain")
        elif url.path == "/api/traces":
            traces = [summary.to_json() for summary in store.traces()]
            self._reply_json({"traces": traces, "count": len(traces)})
        elif url.path == "/api/spans":
            query = parse_qs(url.query)
            spans = store.spans(
                trace_id=query.get("trace_id", [None])[0], service=query.get("service", [None])[0]
            )
            self._reply_json({"spans": [span.to_json() for span in spans], "count": len(spans)})
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _reply_json(self, body: dict[str, object]) -> None:
        self._reply(HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class QueryServer(ThreadingHTTPServer):
    """The query API over one store, bound on construction (port 0 picks a free port)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: SpanStore) -> None:
        super().__init__(address, _QueryHandler)
        self.store = store

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])
