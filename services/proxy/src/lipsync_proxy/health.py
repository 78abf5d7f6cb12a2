"""The backends' live health as /health, /readyz and /metrics report it.

Each backend's grpc.health.v1 status of `lipsync.v1.LipSync` is *watched* (a `Watch` stream per
backend, on a channel of its own so that an unhealthy backend can still be asked), never inferred from
the last call. Where `GRPC_ADDR` names hosts (a `dns:` target such as a Kubernetes headless Service, a
single host:port such as a compose service's replicas), each address the names resolve to is a backend
of its own, and the names are resolved again every `RESOLVE_INTERVAL_S`, as gRPC's balancer follows
them: /health lists every replica. The number of loaded models comes from `ListModels`, asked again
whenever a backend turns SERVING and every `MODEL_REFRESH_S` while one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy.backend import channel_options
from lipsync_proxy.errors import BackendError, StartupError
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.targets import Backend
from lipsync_proxy.wire import SERVICE_NAME

logger = logging.getLogger(__name__)

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
UNKNOWN = "UNKNOWN"
MODEL_REFRESH_S = 15.0
#: Names are resolved again this often (as the frame connections' pool does).
RESOLVE_INTERVAL_S = 5.0
# A Watch stream is renewed this often so that it too has a deadline.
WATCH_DEADLINE_S = 300.0
# Pause before watching again after a failed Watch; the channel's reconnect backoff does the rest.
REWATCH_DELAY_S = 0.2
# A backend without grpc.health.v1 is asked again this rarely.
UNIMPLEMENTED_DELAY_S = 30.0

#: The backends a name stands for now, one per address; raises StartupError or OSError when the name
#: cannot be resolved.
FindBackends = Callable[[], Awaitable[list[Backend]]]


async def watch_health(channel: grpc.aio.Channel, name: str, report: Callable[[str], None]) -> None:
    """Follow the grpc.health.v1 status of `lipsync.v1.LipSync` at `channel`'s backend (`name` in the
    logs) for as long as the task runs: `report(status)` with SERVING, NOT_SERVING (also while the
    backend cannot be reached) or UNKNOWN (a backend without the health service, or a status of
    another name)."""
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    while True:
        delay = REWATCH_DELAY_S
        try:
            # wait_for_ready: while the backend is down the call waits for it to come back.
            async for reply in stub.Watch(request, timeout=WATCH_DEADLINE_S, wait_for_ready=True):
                report(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
            report(UNKNOWN)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                logger.warning("backend %s has no grpc.health.v1 service", name)
                report(UNKNOWN)
                delay = UNIMPLEMENTED_DELAY_S
            elif code != grpc.StatusCode.DEADLINE_EXCEEDED:
                logger.debug("health watch of %s ended: %s %s", name, code.name, exc.details())
                report(NOT_SERVING)
        await asyncio.sleep(delay)


class BackendMonitor:
    """Watches every backend's health and counts the loaded models."""

    def __init__(
        self,
        backends: Sequence[Backend],
        list_models: Callable[[], Awaitable[list[lipsync_pb2.ModelInfo]]],
        metrics: Metrics,
        on_change: Callable[[], None] = lambda: None,
        find: FindBackends | None = None,
    ) -> None:
        """`on_change` is called whenever a backend's status changes or a backend comes or goes.
        With `find`, the backends are what it answers, asked every `RESOLVE_INTERVAL_S`, and
        `backends` is ignored."""
        self.backends = [] if find is not None else list(backends)
        self.statuses = {backend.name: UNKNOWN for backend in self.backends}
        self.loaded_models = 0
        self.started_at = time.monotonic()
        self._list_models = list_models
        self._metrics = metrics
        self._on_change = on_change
        self._find = find
        #: Each watched backend's channel and watching task, by name.
        self._watches: dict[str, tuple[grpc.aio.Channel, asyncio.Task[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh = asyncio.Event()

    @property
    def serving(self) -> bool:
        """True when at least one backend is SERVING."""
        return SERVING in self.statuses.values()

    @property
    def uptime_s(self) -> float:
        """Seconds since the monitor was created (the proxy's uptime)."""
        return time.monotonic() - self.started_at

    def snapshot(self) -> list[dict[str, str]]:
        """Each backend's name, watched target and status, for /health."""
        return [{"name": b.name, "target": b.target, "status": self.statuses[b.name]} for b in self.backends]

    def start(self) -> None:
        """Start watching (call from within the event loop)."""
        if self._find is None:
            for backend in self.backends:
                self._watch(backend)
        else:
            self._tasks.append(asyncio.create_task(self._follow(self._find), name="follow backends"))
        self._tasks.append(asyncio.create_task(self._refresh_models(), name="refresh models"))

    async def close(self) -> None:
        """Stop watching and close the watch channels."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name in list(self._watches):
            await self._unwatch(name)

    def _watch(self, backend: Backend) -> None:
        channel = grpc.aio.insecure_channel(backend.target, options=channel_options(balanced=False))
        task = asyncio.create_task(
            watch_health(channel, backend.name, lambda status: self._set(backend, status)),
            name=f"watch {backend.name}",
        )
        self._watches[backend.name] = (channel, task)

    async def _unwatch(self, name: str) -> None:
        channel, task = self._watches.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.close()

    async def _follow(self, find: FindBackends) -> None:
        while True:
            try:
                found = await find()
            except (StartupError, OSError) as exc:
                # A failed lookup keeps the backends found before.
                logger.debug("cannot resolve the backends: %s", exc)
            else:
                await self._replace(found)
            await asyncio.sleep(RESOLVE_INTERVAL_S)

    async def _replace(self, found: Sequence[Backend]) -> None:
        """Watch exactly `found`: a backend no longer there is forgotten, a new one starts UNKNOWN."""
        names = {backend.name for backend in found}
        known = set(self.statuses)
        if names == known:
            return
        # The list and the statuses change together, before any await: /health may read them between.
        self.backends = list(found)
        for name in known - names:
            logger.info("backend %s is gone", name)
            del self.statuses[name]
            with contextlib.suppress(KeyError):  # a backend never seen SERVING or not has no sample
                self._metrics.backend_serving.remove(name)
        for backend in found:
            if backend.name not in known:
                logger.info("backend %s found", backend.name)
                self.statuses[backend.name] = UNKNOWN
                self._watch(backend)
        if not self.serving:
            self.loaded_models = 0
        self._on_change()
        for name in known - names:
            await self._unwatch(name)

    def _set(self, backend: Backend, status: str) -> None:
        previous = self.statuses.get(backend.name)
        if previous is None or status == previous:
            return
        self.statuses[backend.name] = status
        self._metrics.backend_serving.labels(backend.name).set(1 if status == SERVING else 0)
        log = logger.info if status == SERVING else logger.warning
        log("backend %s: %s -> %s", backend.name, previous, status)
        self._on_change()
        if status == SERVING:
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
