"""The backends' health as /health, /readyz and /metrics report it, and the loaded model count.

The statuses are the backend pool's (`lipsync_proxy.backends`: each address's grpc.health.v1 status,
watched), the same view that routes the calls. The number of loaded models comes from `ListModels`,
asked again whenever a backend turns SERVING and every `MODEL_REFRESH_S` while one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.backends import Backend, BackendPool
from lipsync_proxy.errors import BackendError
from lipsync_proxy.metrics import Metrics

logger = logging.getLogger(__name__)

MODEL_REFRESH_S = 15.0


class BackendMonitor:
    """Reports the pool's backends and counts the loaded models."""

    def __init__(
        self,
        pool: BackendPool,
        list_models: Callable[[], Awaitable[list[lipsync_pb2.ModelInfo]]],
        metrics: Metrics,
    ) -> None:
        self.pool = pool
        self.loaded_models = 0
        self.started_at = time.monotonic()
        self._list_models = list_models
        self._metrics = metrics
        self._refresh = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        """Whether any backend is SERVING."""
        return self.pool.serving

    @property
    def uptime_s(self) -> float:
        """Seconds since the monitor was created (the proxy's uptime)."""
        return time.monotonic() - self.started_at

    def snapshot(self) -> list[dict[str, str | int]]:
        """Each backend address's name, address, status and frames (taken and failed), for /health."""
        return [
            {
                "name": b.name,
                "target": str(b.address),
                "status": b.status,
                "total_requests": b.total_requests,
                "error_count": b.error_count,
            }
            for b in self.pool.backends
        ]

    def start(self) -> None:
        """Start refreshing the model count (call from within the event loop)."""
        self._refresher = asyncio.create_task(self._refresh_models(), name="refresh models")

    async def close(self) -> None:
        """Stop refreshing."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    def changed(self, backend: Backend, previous: str) -> None:
        """The pool's news: `backend`'s status changed from `previous`."""
        self._metrics.backend_serving.labels(backend.name).set(1 if backend.serving else 0)
        if backend.serving:
            self._refresh.set()
        elif not self.serving:
            # No backend to serve them: no model is loaded as far as the proxy's clients can tell.
            self.loaded_models = 0

    async def _refresh_models(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), MODEL_REFRESH_S)
            self._refresh.clear()
            if not self.serving:
                continue
            try:
                models = await self._list_models()
            except BackendError as exc:
                logger.warning("cannot list the backends' models: %s (%s)", exc.message, exc.details)
                continue
            self.loaded_models = sum(1 for m in models if m.state == lipsync_pb2.MODEL_STATE_READY)
