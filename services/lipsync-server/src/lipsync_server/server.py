"""Build the server (`create_server`) separately from running it (`cli.main`).

Health starts NOT_SERVING; models load in the background and health turns SERVING once at least one is
loaded and warmed. At shutdown health turns NOT_SERVING first, then the server stops within the grace
period.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import TracerProvider

from lipsync_protos import optimized_lipsyncsrv_pb2, optimized_lipsyncsrv_pb2_grpc
from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc
from lipsync_server.core import MAX_RECEIVE_BYTES, MAX_SEND_BYTES, ServerCore
from lipsync_server.engines.base import Engine
from lipsync_server.inference import InferenceRunner
from lipsync_server.metrics import ServerMetrics
from lipsync_server.packages.model import ModelPackage
from lipsync_server.registry import ModelRegistry, ModelState, PackageLoader, load_model, package_dirs
from lipsync_server.seed_servicer import SeedServicer
from lipsync_server.servicer import LipSyncServicer
from lipsync_server.settings import Settings
from lipsync_server.telemetry import server_interceptors, stage_tracer

logger = logging.getLogger(__name__)

LIPSYNC_SERVICE = lipsync_pb2.DESCRIPTOR.services_by_name["LipSync"].full_name
SEED_SERVICE = optimized_lipsyncsrv_pb2.DESCRIPTOR.services_by_name["OptimizedLipSyncService"].full_name
HEALTH_SERVICES = ("", LIPSYNC_SERVICE, SEED_SERVICE)
# How long the server keeps taking calls after it turns NOT_SERVING, so that the balancers watching
# its health (the proxy's health watch, gRPC clients' health checking) move their calls elsewhere.
SHUTDOWN_NOTICE_S = 1.0
# A client connection is told to go away (GOAWAY; its calls and streams under way finish) after this
# long. gRPC's DNS resolver looks a name up again only when a connection ends, so without it a client
# balancing over a headless Service or a compose service never learns of replicas that start later.
MAX_CONNECTION_AGE_S = 20


class StartupError(RuntimeError):
    """The server cannot start (port in use, bad address)."""


@dataclass(frozen=True)
class Deps:
    """What the server is built from; tests swap in their own."""

    load_package: PackageLoader
    engines: Mapping[str, Engine]
    demo_package: Callable[[Path], Path]
    # Where the server's spans go; None: no tracing (see telemetry.tracer_provider).
    tracer_provider: TracerProvider | None = None


def default_deps(device: str = "auto", precision: str = "auto") -> Deps:
    from lipsync_server.demo import ensure_demo_package
    from lipsync_server.engines.sprite import SpriteEngine
    from lipsync_server.engines.unet328 import Unet328Engine
    from lipsync_server.packages.loader import load_package

    def load(path: Path, name: str | None) -> ModelPackage:
        return load_package(path, name=name)

    engines: dict[str, Engine] = {
        "sprite": SpriteEngine(),
        "unet328": Unet328Engine(device, precision=precision),
    }
    return Deps(load_package=load, engines=engines, demo_package=ensure_demo_package)


class LipsyncServer:
    def __init__(self, settings: Settings, deps: Deps, grpc_server: grpc.aio.Server, port: int) -> None:
        self.settings = settings
        self.deps = deps
        self.port = port
        self.metrics_port: int | None = None
        self._grpc = grpc_server
        self.metrics = ServerMetrics()
        self.registry = ModelRegistry()
        self.runner = InferenceRunner(
            settings.workers,
            settings.max_queue,
            stage_tracer(deps.tracer_provider),
            max_batch=settings.max_batch,
            batch_wait_ms=settings.batch_wait_ms,
        )
        # Read at scrape time: nothing to update per frame.
        self.metrics.queued.set_function(lambda: self.runner.queued)
        self.core = ServerCore(
            settings, self.registry, self.runner, self.metrics, deps.load_package, deps.engines
        )
        self.health = health.aio.HealthServicer()
        self.servicer = LipSyncServicer(self.core)
        self._base_videos: asyncio.Task[None] | None = None
        lipsync_pb2_grpc.add_LipSyncServicer_to_server(self.servicer, grpc_server)
        optimized_lipsyncsrv_pb2_grpc.add_OptimizedLipSyncServiceServicer_to_server(
            SeedServicer(self.core), grpc_server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, grpc_server)
        reflection.enable_server_reflection(
            (*HEALTH_SERVICES[1:], health.SERVICE_NAME, reflection.SERVICE_NAME), grpc_server
        )

    async def start(self) -> None:
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._grpc.start()
        if self.settings.metrics_port:
            self.metrics_port = self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        logger.info(
            "lipsync-server listening on port %d (metrics: %s)", self.port, self.metrics_port or "off"
        )

    async def load_models(self) -> None:
        """Load every configured package, then report SERVING if at least one is ready."""
        settings = self.settings
        if settings.models_dir is None:
            sources = [await self.runner.call(self.deps.demo_package, settings.cache_dir)]
        else:
            sources = package_dirs(settings.models_dir, settings.models)
        for source in sources:
            try:
                await self.runner.call(
                    load_model, self.registry, source, source.name, self.deps.load_package, self.deps.engines
                )
            except Exception:
                logger.debug("load of %s failed", source, exc_info=True)
        for state in ModelState:
            count = sum(1 for entry in self.registry.entries() if entry.state is state)
            self.metrics.models.labels(state.value).set(count)
        if not self.registry.ready_names():
            logger.error("no model could be loaded; health stays NOT_SERVING")
            return
        self.core.serving = True
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving models: %s", ", ".join(self.registry.ready_names()))
        # In the background: the first viewer of a model need not wait for its base video.
        self._base_videos = asyncio.create_task(self.servicer.prepare_base_videos(), name="base videos")

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING first, still taking calls for a moment (so balancers move away), then refuse new
        calls and finish the in-flight ones within the rest of the grace period."""
        grace = self.settings.grace_period_s if grace_s is None else grace_s
        self.core.serving = False
        if self._base_videos is not None:
            self._base_videos.cancel()
        await self.health.enter_graceful_shutdown()
        # Found by the fault suite: stopping at once refused the calls a balancer had already sent
        # here before it saw NOT_SERVING, and a client saw UNAVAILABLE during a rolling restart.
        notice = min(SHUTDOWN_NOTICE_S, grace)
        await asyncio.sleep(notice)
        stopping = asyncio.ensure_future(self._grpc.stop(grace - notice))
        # Also found by the fault suite: balancers' health Watch streams never end by themselves, so
        # every stop took the whole grace period. Once the calls being served are done, end them.
        while not stopping.done():
            await asyncio.sleep(0.05)
            if not self.metrics.active:
                await self._grpc.stop(None)
        await stopping
        self.runner.shutdown()

    async def wait_for_termination(self) -> None:
        await self._grpc.wait_for_termination()


def check_bindable(host: str, port: int) -> None:
    """Fail with one clear line before grpc-core logs its own multi-line bind error."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def create_server(settings: Settings, deps: Deps | None = None) -> LipsyncServer:
    """A server bound to `settings.port` (0 picks a free one; see `.port`), not started yet."""
    deps = deps or default_deps(settings.device, settings.precision)
    grpc_server = grpc.aio.server(
        interceptors=server_interceptors(deps.tracer_provider),
        options=[
            # Without this a second server could bind the same port and steal half the traffic.
            ("grpc.so_reuseport", 0),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
        ],
    )
    address = f"{settings.host}:{settings.port}"
    check_bindable(settings.host, settings.port)
    try:
        port = grpc_server.add_insecure_port(address)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise StartupError(f"cannot listen on {address}: address in use or invalid")
    return LipsyncServer(settings, deps, grpc_server, port)
