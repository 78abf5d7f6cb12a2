"""The proxy assembled: backend client, health monitor, HTTP routes and the WebSocket server.

`create_app(settings)` returns a running `ProxyApp` bound to its port (0 picks a free one, as tests
do); `lipsync_proxy.cli.main` adds logging, signals and the exit code around it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import dataclass

from opentelemetry.trace import TracerProvider
from websockets.asyncio.server import Server, serve

from lipsync_proxy.backend import BackendClient
from lipsync_proxy.backends import BackendPool, Resolver
from lipsync_proxy.base_video import BaseVideos
from lipsync_proxy.connection import ConnectionHandler, ProxyConnection, select_subprotocol
from lipsync_proxy.errors import StartupError
from lipsync_proxy.health import BackendMonitor
from lipsync_proxy.http_routes import HttpRoutes
from lipsync_proxy.memory import malloc_trim, trim_when_idle
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.settings import Settings
from lipsync_proxy.state import ProxyState
from lipsync_proxy.targets import TargetError, parse_grpc_addr, sources_of

logger = logging.getLogger(__name__)

#: The instrumentation scope of the request and session spans.
INSTRUMENTATION_NAME = "lipsync_proxy"
#: How long a closing handshake may take before the TCP connection is dropped.
CLOSE_TIMEOUT_S = 5.0
#: Messages websockets buffers for a connection the handler is not reading (it reads only with a
#: free slot); past it, TCP holds the client back. Each may be up to --max-message-size.
MAX_QUEUED_MESSAGES = 4


async def resolve_host(host: str) -> list[str]:
    """The IP addresses of a host name, IPv4 first."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise StartupError(f"cannot resolve backend host {host!r}: {exc}") from None
    addresses = dict.fromkeys(str(info[4][0]) for info in sorted(infos, key=lambda i: i[0] != socket.AF_INET))
    return list(addresses)


@dataclass(frozen=True)
class Dependencies:
    """What the app takes from its environment; tests replace them."""

    resolve: Resolver = resolve_host
    #: Where the request and session spans go; None: no tracing (see telemetry.tracer_provider).
    tracer_provider: TracerProvider | None = None


class ProxyApp:
    """A running proxy: serves until `shutdown`."""

    def __init__(
        self, state: ProxyState, monitor: BackendMonitor, server: Server, connections: set[ConnectionHandler]
    ) -> None:
        self.state = state
        self.monitor = monitor
        self.server = server
        self._connections = connections
        self._trimmer = asyncio.create_task(trim_when_idle(state, malloc_trim()), name="trim when idle")
        #: The port the proxy listens on (the one picked when the settings asked for port 0).
        self.port: int = server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        """Stop accepting, let the connections finish what they read within the grace period, close
        them with 1001, then close the backends' connections and channels."""
        state = self.state
        grace = state.settings.grace_period_s
        state.draining = True
        logger.info(
            "shutting down: %d connections, %d requests in flight, grace %.1fs",
            len(self._connections),
            state.inflight,
            grace,
        )
        self.server.close(close_connections=False)
        deadline = asyncio.get_running_loop().time() + grace
        for handler in list(self._connections):
            handler.stop(deadline)
        await self.server.wait_closed()
        self._trimmer.cancel()
        await self.monitor.close()
        await state.backend.close()
        logger.info("shut down")


async def create_app(settings: Settings, deps: Dependencies | None = None) -> ProxyApp:
    """Build the proxy and start listening; raises StartupError (port in use, unresolvable backend)."""
    deps = deps or Dependencies()
    try:
        addr = parse_grpc_addr(settings.grpc_addr)
        sources = sources_of(addr, {name: await deps.resolve(name) for name in addr.names})
    except TargetError as exc:
        raise StartupError(f"bad --grpc-addr {settings.grpc_addr!r}: {exc}") from None
    metrics = Metrics()
    provider = deps.tracer_provider
    tracer = None if provider is None else provider.get_tracer(INSTRUMENTATION_NAME)
    pool = BackendPool(sources, deps.resolve, on_change=lambda backend, was: monitor.changed(backend, was))
    backend = BackendClient(
        pool, settings.timeout_s, settings.session_timeout_s, metrics, settings.max_batch, tracer
    )
    monitor = BackendMonitor(pool, backend.list_models, metrics)
    state = ProxyState(settings, backend, metrics, tracer)
    metrics.inflight.set_function(lambda: state.inflight)
    metrics.sessions.set_function(lambda: state.sessions)
    connections: set[ConnectionHandler] = set()

    async def handle(ws: ProxyConnection) -> None:
        handler = ConnectionHandler(state, ws)
        protocol = "v2" if handler.is_v2 else "v1"
        metrics.connections_total.labels(protocol).inc()
        gauge = metrics.connections.labels(protocol)
        gauge.inc()
        connections.add(handler)
        try:
            await handler.run()
        finally:
            connections.discard(handler)
            gauge.dec()

    routes = HttpRoutes(
        settings.static_dir,
        settings.allowed_origins,
        monitor,
        metrics,
        lambda: state.draining,
        BaseVideos(pool),
    )
    try:
        server = await serve(
            handle,  # type: ignore[arg-type]  # create_connection makes every connection a ProxyConnection
            settings.host or None,
            settings.ws_port,
            create_connection=ProxyConnection,
            process_request=routes,
            select_subprotocol=select_subprotocol,
            # permessage-deflate does not shrink JPEGs; it would cost more CPU per frame than all the
            # rest, and memory per connection.
            compression=None,
            max_size=settings.max_message_size,
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_interval_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_queue=MAX_QUEUED_MESSAGES,
        )
    except OSError as exc:
        await backend.close()
        where = f"{settings.host or '*'}:{settings.ws_port}"
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"cannot listen on {where}: address already in use") from None
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    pool.start()
    monitor.start()
    app = ProxyApp(state, monitor, server, connections)
    logger.info("listening on %s:%d; backends %s", settings.host or "*", app.port, settings.grpc_addr)
    return app
