"""The backends, one per address: the proxy's one resolver, health view and balancer.

The addresses come from `GRPC_ADDR` (`lipsync_proxy.targets`); those of a name are looked up again every
`RESOLVE_INTERVAL_S`. Each address has a gRPC channel to exactly it, on which its grpc.health.v1 status
is watched, never inferred from the last call: this one view routes the calls and is what /health,
/readyz and the metrics report. A SERVING address also has an HTTP/2 connection of the proxy's own
(`lipsync_proxy.http2`) for the frames; the lookups and `Speak` streams go on its channel. Calls take
the SERVING addresses in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_proxy.errors import BackendError, StartupError
from lipsync_proxy.http2 import USER_AGENT, Http2Connection
from lipsync_proxy.targets import Address, Source
from lipsync_proxy.wire import SERVICE_NAME

logger = logging.getLogger(__name__)

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
UNKNOWN = "UNKNOWN"

#: Names are resolved again this often.
RESOLVE_INTERVAL_S = 5.0
#: A connection that failed to open is tried again no sooner than this.
RETRY_S = 1.0
#: A connection with calls under way that has received nothing for this long is sent a PING, and one
#: that leaves it unanswered as long again is taken for dead (its calls fail and go elsewhere).
KEEPALIVE_S = 2.0
#: A Watch stream is renewed this often so that it too has a deadline.
WATCH_DEADLINE_S = 300.0
#: Pause before watching again after a failed Watch; the channel's reconnect backoff does the rest.
REWATCH_DELAY_S = 0.2
#: A backend without grpc.health.v1 is asked again this rarely.
UNIMPLEMENTED_DELAY_S = 30.0
#: Frames are JPEGs well below this; gRPC's default limit of 4 MiB is too tight for large frames.
MAX_RECEIVE_MESSAGE_BYTES = 64 << 20
#: gRPC's default reconnect backoff grows to 120 s; a backend that restarts should be used again within
#: about two seconds, and a connection attempt to a dead address every two seconds costs nothing.
RECONNECT_BACKOFF_MS = (200, 2000)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
    ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
    ("grpc.primary_user_agent", USER_AGENT),
    # One call at a time is never retried by grpc: a failed lookup goes to the next address instead.
    ("grpc.enable_retries", 0),
]

#: The IP addresses of a host name (`lipsync_proxy.app.resolve_host`).
Resolver = Callable[[str], Awaitable[list[str]]]


@dataclass(eq=False, slots=True)
class Backend:
    """One backend address: its health, its gRPC channel and its HTTP/2 connection."""

    #: GRPC_ADDR's name for it, with the IP address when that was a host name.
    name: str
    address: Address
    status: str = UNKNOWN
    channel: grpc.aio.Channel = field(init=False)
    #: The connection frames go on; None while there is none open.
    connection: Http2Connection | None = None
    connecting: bool = False
    retry_at: float = 0.0
    watch: asyncio.Task[None] | None = None
    #: Frames this address took, and those whose call failed (a status other than OK): the seed
    #: Go proxy's per-backend `total_requests` and `error_count` on /health.
    total_requests: int = 0
    error_count: int = 0

    def __post_init__(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.address.target, options=CHANNEL_OPTIONS)

    def count(self, frames: int, failed: bool) -> None:
        """A call that carried `frames` frames to this address is over."""
        self.total_requests += frames
        if failed:
            self.error_count += frames

    @property
    def serving(self) -> bool:
        return self.status == SERVING

    def ready(self) -> Http2Connection | None:
        """Its open connection, while it is SERVING."""
        connection = self.connection
        if self.status == SERVING and connection is not None and not connection.closing:
            return connection
        return None

    def stop_serving(self) -> None:
        """No new call; the calls under way finish on the connection, which then closes."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class BackendPool:
    """Every backend address GRPC_ADDR leads to (see the module's docstring)."""

    def __init__(
        self,
        sources: Sequence[Source],
        resolve: Resolver,
        on_change: Callable[[Backend, str], None] = lambda backend, previous: None,
    ) -> None:
        """`on_change(backend, previous)` is told of every change of a backend's status."""
        self._sources = list(sources)
        self._resolve = resolve
        self._on_change = on_change
        #: The addresses each source gave last, kept while a name cannot be resolved.
        self._found: dict[Source, dict[Address, str]] = {}
        self._backends: dict[Address, Backend] = {}
        self.backends: list[Backend] = []
        self._next = 0
        #: Set whenever a connection opens or a status changes: callers waiting for a backend look again.
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def serving(self) -> bool:
        """Whether any backend is SERVING."""
        return any(backend.serving for backend in self.backends)

    def start(self) -> None:
        """Start following the addresses (call from within the event loop); fixed ones are known now."""
        fixed = {s.fixed: s.name for s in self._sources if s.fixed is not None}
        self._update(fixed)
        self._spawn(self._follow())
        self._spawn(self._keepalive())

    def pick(self) -> tuple[Backend, Http2Connection] | None:
        """The next SERVING backend with an open connection, in turn; None while there is none."""
        backends = self.backends
        for _ in range(len(backends)):
            backend = backends[self._next % len(backends)]
            self._next += 1
            connection = backend.ready()
            if connection is not None:
                return backend, connection
            if backend.serving:
                self._connect(backend)
        return None

    async def wait(self, deadline: float) -> tuple[Backend, Http2Connection]:
        """`pick`, waiting until `deadline` (loop time) while a SERVING backend's connection is opening
        or a backend's status is not known yet (at start); raises BackendError (`_wait`)."""
        while True:
            picked = self.pick()
            if picked is not None:
                return picked
            await self._wait(deadline)

    async def channel(self, deadline: float, avoid: grpc.aio.Channel | None = None) -> grpc.aio.Channel:
        """The gRPC channel of the next SERVING backend, another than `avoid` when there is one,
        waiting as `wait` does for a backend whose status is not known yet."""
        while True:
            serving = [backend for backend in self.backends if backend.serving]
            if serving:
                self._next += 1
                backend = serving[self._next % len(serving)]
                if backend.channel is avoid and len(serving) > 1:
                    backend = serving[(self._next + 1) % len(serving)]
                return backend.channel
            await self._wait(deadline)

    async def _wait(self, deadline: float) -> None:
        """Wait for news until `deadline` while a backend is SERVING (its connection is opening) or its
        status is not known yet: UNAVAILABLE at once otherwise, DEADLINE_EXCEEDED at the deadline."""
        if self._closed or not any(b.status in (SERVING, UNKNOWN) for b in self.backends):
            raise BackendError(grpc.StatusCode.UNAVAILABLE, "no backend is serving")
        now = asyncio.get_running_loop().time()
        if now >= deadline:
            raise BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        self._changed.clear()
        # At most RETRY_S: a connection that failed to open is tried again by the caller's next pick.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(min(deadline, now + RETRY_S)):
                await self._changed.wait()

    # --- addresses --------------------------------------------------------------------------------

    async def _follow(self) -> None:
        if all(source.fixed is not None for source in self._sources):
            return
        while True:
            found: dict[Address, str] = {}
            for source in self._sources:
                found |= await self._addresses_of(source)
            self._update(found)
            await asyncio.sleep(RESOLVE_INTERVAL_S)

    async def _addresses_of(self, source: Source) -> dict[Address, str]:
        if source.fixed is not None:
            return {source.fixed: source.name}
        try:
            ips = await self._resolve(source.host)
        except (StartupError, OSError) as exc:
            # A failed lookup keeps what it found before.
            logger.debug("cannot resolve backend host %s: %s", source.host, exc)
            return self._found.get(source, {})
        found = {Address(ip, source.port): f"{source.name} ({ip})" for ip in ips}
        self._found[source] = found
        return found

    def _update(self, found: dict[Address, str]) -> None:
        for address in set(self._backends) - set(found):
            backend = self._backends.pop(address)
            logger.info("backend address %s is gone", address)
            backend.stop_serving()
            if backend.watch is not None:
                backend.watch.cancel()
            self._set(backend, NOT_SERVING)
        for address, name in found.items():
            if address not in self._backends:
                backend = self._backends[address] = Backend(name, address)
                backend.watch = self._spawn(self._watch(backend))
        # In GRPC_ADDR's order.
        self.backends = [self._backends[address] for address in found]

    # --- health -----------------------------------------------------------------------------------

    async def _watch(self, backend: Backend) -> None:
        try:
            await self._follow_health(backend)
        finally:
            await backend.channel.close()

    async def _follow_health(self, backend: Backend) -> None:
        """Follow the address's grpc.health.v1 status of `lipsync.v1.LipSync`: SERVING, or NOT_SERVING
        (also while the backend cannot be reached, and for a backend without the health service: the
        proxy cannot know whether it serves, and its frames had better fail at once than wait out their
        deadline), UNKNOWN after a watch the backend ended, or a status of another name."""
        stub = health_pb2_grpc.HealthStub(backend.channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        known = False
        while True:
            delay = REWATCH_DELAY_S
            try:
                # The first watch fails at once when the backend cannot be reached (it is NOT_SERVING,
                # not unknown); later ones wait for it to come back.
                async for reply in stub.Watch(request, timeout=WATCH_DEADLINE_S, wait_for_ready=known):
                    known = True
                    self._set(backend, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                self._set(backend, UNKNOWN)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    logger.warning("backend %s has no grpc.health.v1 service: NOT_SERVING", backend.name)
                    self._set(backend, NOT_SERVING)
                    delay = UNIMPLEMENTED_DELAY_S
                elif code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    logger.debug("health watch of %s ended: %s %s", backend.name, code.name, exc.details())
                    self._set(backend, NOT_SERVING)
                known = True
            await asyncio.sleep(delay)

    def _set(self, backend: Backend, status: str) -> None:
        previous = backend.status
        if status == previous:
            return
        backend.status = status
        log = logger.info if status == SERVING else logger.warning
        log("backend %s: %s -> %s", backend.name, previous, status)
        if status == SERVING:
            self._connect(backend)
        else:
            backend.stop_serving()
        self._changed.set()
        self._on_change(backend, previous)

    # --- connections ------------------------------------------------------------------------------

    def _connect(self, backend: Backend) -> None:
        """Open the backend's connection in the background, unless one is open or opening, or the last
        attempt failed less than RETRY_S ago."""
        if backend.connecting or backend.ready() is not None:
            return
        if asyncio.get_running_loop().time() < backend.retry_at:
            return
        backend.connecting = True
        backend.connection = None
        self._spawn(self._open(backend))

    async def _open(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        address = backend.address

        def closed(connection: Http2Connection) -> None:
            if backend.connection is connection:
                backend.connection = None

        def protocol() -> Http2Connection:
            return Http2Connection(address.authority, on_closed=closed)

        try:
            if address.path:
                _, connection = await loop.create_unix_connection(protocol, address.path)
            else:
                _, connection = await loop.create_connection(protocol, address.host, address.port)
        except OSError as exc:
            logger.debug("cannot open an HTTP/2 connection to %s: %s", address, exc)
            backend.retry_at = loop.time() + RETRY_S
            return
        finally:
            backend.connecting = False
        if self._closed or not backend.serving or self._backends.get(address) is not backend:
            connection.close()
            return
        backend.connection = connection
        self._changed.set()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            for backend in self.backends:
                if backend.connection is not None:
                    backend.connection.keepalive()

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop following, close every connection (failing the calls still on them) and channel."""
        self._closed = True
        self._changed.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for backend in self.backends:
            if backend.connection is not None:
                backend.connection.abort()
                backend.connection = None
            await backend.channel.close()
