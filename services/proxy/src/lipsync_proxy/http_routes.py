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
    """A JSON response."""
    return response(status, json.dumps(payload).encode(), JSON_TYPE)


def not_found() -> Response:
    """404 with a short plain text body."""
    return response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")


class HttpRoutes:
    """The `process_request` hook of the proxy's server."""

    def __init__(
        self,
        static_dir: Path | None,
        allowed_origins: tuple[str, ...],
        monitor: BackendMonitor,
        metrics: Metrics,
        draining: Callable[[], bool],
        base_videos: BaseVideos | None = None,
    ) -> None:
        self._static_dir = static_dir
        self._base_videos = base_videos
        self._allowed_origins = allowed_origins
        self._monitor = monitor
        self._metrics = metrics
        self._draining = draining

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return self._websocket(request)
        if path == "/health":
            return self._health()
        if path == "/healthz":
            return json_response(http.HTTPStatus.OK, {"status": "alive"})
        if path == "/readyz":
            ready = self._monitor.serving and not self._draining()
            status = http.HTTPStatus.OK if ready else http.HTTPStatus.SERVICE_UNAVAILABLE
            return json_response(status, {"ready": ready})
        if path == "/metrics":
            return response(http.HTTPStatus.OK, self._metrics.exposition(), METRICS_CONTENT_TYPE)
        if self._base_videos is not None and is_base_video_path(path):
            query = request.path.partition("?")[2]
            answer = await self._base_videos.answer(path, query, request.headers.get("If-None-Match"))
            return response(answer.status, answer.body, answer.content_type, answer.cache, answer.headers)
        return await self._static(path)

    def _websocket(self, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.headers.get("Host"), self._allowed_origins):
            logger.warning("refused a WebSocket from origin %r", origin)
            return response(http.HTTPStatus.FORBIDDEN, b"origin not allowed\n", "text/plain; charset=utf-8")
        if self._draining():
            return response(
                http.HTTPStatus.SERVICE_UNAVAILABLE, b"shutting down\n", "text/plain; charset=utf-8"
            )
        return None

    def _health(self) -> Response:
        healthy = self._monitor.serving and not self._draining()
        backends = self._backends()
        payload = {
            "status": SERVING if healthy else NOT_SERVING,
            "healthy": healthy,
            "loaded_models": self._monitor.loaded_models,
            "uptime": round(self._monitor.uptime_s, 2),
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
            for backend in self._monitor.snapshot()
        ]

    async def _static(self, path: str) -> Response:
        if self._static_dir is None:
            return not_found()
        static_dir = self._static_dir
        # File system calls leave the event loop: a slow disk must not stall the frames of others.
        found = await asyncio.to_thread(static_files.resolve, static_dir, path)
        if found is None:
            return not_found()
        try:
            body = await asyncio.to_thread(found.read_bytes)
        except OSError:
            return not_found()
        return response(http.HTTPStatus.OK, body, static_files.content_type(found), cache="no-cache")
