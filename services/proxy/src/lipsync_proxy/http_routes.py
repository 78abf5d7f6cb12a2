"""Plain HTTP on the WebSocket port, answered from websockets' `process_request` hook.

`/ws` continues to the WebSocket handshake when its origin is allowed (403 otherwise); `/health`,
`/healthz`, `/readyz` and `/metrics` are answered here, and `/models/{name}/base-video` by
base_video.py; any other path is a file of the static directory or 404. websockets closes the TCP
connection after each such response.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from lipsync_proxy import static_files
from lipsync_proxy.backends import NOT_SERVING, SERVING
from lipsync_proxy.base_video import BaseVideos, is_base_video_path
from lipsync_proxy.health import BackendMonitor
from lipsync_proxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.origins import origin_allowed

logger = logging.getLogger(__name__)

WS_PATH = "/ws"
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"


def response(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    cache: str = "no-store",
    extra: list[tuple[str, str]] | None = None,
) -> Response:
    """A complete HTTP response; the connection closes after it."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", cache),
            ("X-Content-Type-Options", "nosniff"),
            *(extra or []),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def json_response(status: http.HTTPStatus, payload: object) -> Response:
    return response(status, json.dumps(payload).encode(), JSON_TYPE)


def text_response(status: http.HTTPStatus, text: str) -> Response:
    """A line of plain text."""
    return response(status, f"{text}\n".encode(), TEXT_TYPE)


@dataclass
class HttpRoutes:
    """The `process_request` hook of the proxy's server."""

    static_dir: Path | None
    allowed_origins: tuple[str, ...]
    monitor: BackendMonitor
    metrics: Metrics
    draining: Callable[[], bool]
    base_videos: BaseVideos | None = None

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return self._websocket(request)
        if path == "/health":
            return self._health()
        if path == "/healthz":
            return json_response(http.HTTPStatus.OK, {"status": "alive"})
        if path == "/readyz":
            ready = self.monitor.serving and not self.draining()
            status = http.HTTPStatus.OK if ready else http.HTTPStatus.SERVICE_UNAVAILABLE
            return json_response(status, {"ready": ready})
        if path == "/metrics":
            return response(http.HTTPStatus.OK, self.metrics.exposition(), METRICS_CONTENT_TYPE)
        if self.base_videos is not None and is_base_video_path(path):
            query = request.path.partition("?")[2]
            answer = await self.base_videos.answer(path, query, request.headers.get("If-None-Match"))
            return response(answer.status, answer.body, answer.content_type, answer.cache, answer.headers)
        return await self._static(path)

    def _websocket(self, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.headers.get("Host"), self.allowed_origins):
            logger.warning("refused a WebSocket from origin %r", origin)
            return text_response(http.HTTPStatus.FORBIDDEN, "origin not allowed")
        if self.draining():
            return text_response(http.HTTPStatus.SERVICE_UNAVAILABLE, "shutting down")
        return None

    def _health(self) -> Response:
        healthy = self.monitor.serving and not self.draining()
        backends = self._backends()
        payload = {
            "status": SERVING if healthy else NOT_SERVING,
            "healthy": healthy,
            "loaded_models": self.monitor.loaded_models,
            "uptime": round(self.monitor.uptime_s, 2),
            "backends": backends,
            # The seed Go proxy's keys, which monitors written against it read.
            "healthy_count": sum(1 for backend in backends if backend["healthy"]),
            "total_backends": len(backends),
            "total_requests": sum(int(backend["total_requests"]) for backend in backends),
            "error_count": sum(int(backend["error_count"]) for backend in backends),
        }
        return json_response(http.HTTPStatus.OK if healthy else http.HTTPStatus.SERVICE_UNAVAILABLE, payload)

    def _backends(self) -> list[dict[str, str | int | bool]]:
        """Each backend address as the monitor sees it, with the seed Go proxy's keys: its `address`,
        `healthy`, and the frames it took and failed (`total_requests`, `error_count`)."""
        return [
            # A resolved name is listed as "host:port (ip)"; the seed listed host:port.
            {
                **backend,
                "address": str(backend["name"]).split(" (", 1)[0],
                "healthy": backend["status"] == SERVING,
            }
            for backend in self.monitor.snapshot()
        ]

    async def _static(self, path: str) -> Response:
        if self.static_dir is not None:
            # File system calls leave the event loop: a slow disk must not stall the frames of others.
            found = await asyncio.to_thread(static_files.read, self.static_dir, path)
            if found is not None:
                body, content_type = found
                return response(http.HTTPStatus.OK, body, content_type, cache="no-cache")
        return text_response(http.HTTPStatus.NOT_FOUND, "not found")
