"""The proxy's own HTTP/2 connections to the backends (`lipsync_proxy.http2`), for frame batches.

A batch must go only where grpc's balancer would send a call: to a backend that serves. So the pool
follows the backends one address at a time, as grpc's round_robin with health checks does:

* the addresses: `GRPC_ADDR`'s names are resolved again every `RESOLVE_INTERVAL_S` (a `dns:` target,
  a single host:port: grpc follows their changes too, e.g. a Kubernetes headless Service's pods); IP
  addresses, the comma list's addresses (resolved once at start, as the channel's target is) and a
  `unix:` socket are fixed;
* each address's grpc.health.v1 status, watched on a channel of its own;
* one connection to each address that is SERVING, used in turn.

Any other target scheme (xds, vsock, ...) leaves batches to grpc.aio, and so does any moment with no
SERVING address connected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from lipsync_proxy.backend import channel_options
from lipsync_proxy.errors import StartupError
from lipsync_proxy.health import SERVING, watch_health
from lipsync_proxy.http2 import Http2Connection
from lipsync_proxy.targets import GrpcAddr, TargetError, endpoint_addresses, parse_grpc_addr

logger = logging.getLogger(__name__)

#: Names are resolved again this often.
RESOLVE_INTERVAL_S = 5.0
#: A connection that failed to open is tried again no sooner than this.
RETRY_S = 1.0

Resolver = Callable[[str], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Address:
    """One backend address: an IP address `host` and `port`, or the `path` of a Unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def authority(self) -> str:
        if self.path:
            return "localhost"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def target(self) -> str:
        """The gRPC target of exactly this address."""
        if self.path:
            return f"unix:{self.path}"
        return f"ipv6:{self.authority}" if ":" in self.host else f"ipv4:{self.authority}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where addresses come from: a `host` name to resolve (with its `port`), or one `fixed` address."""

    host: str = ""
    port: int = 0
    fixed: Address | None = None


def sources_of(addr: GrpcAddr, resolved: Mapping[str, Sequence[str]]) -> list[Source]:
    """The sources of a parsed `GRPC_ADDR`; `resolved` holds the comma list's names resolved at start.
    Empty for a target scheme the pool does not follow."""
    if addr.uri is None:
        if len(addr.endpoints) == 1:
            return _endpoint_sources(addr)
        return [Source(fixed=Address(ip, e.port)) for e, ip in endpoint_addresses(addr, resolved)]
    scheme, _, rest = addr.uri.partition(":")
    scheme = scheme.lower()
    if scheme == "unix":
        path = rest[2:] if rest.startswith("//") else rest
        return [Source(fixed=Address(path=path))] if path.startswith("/") else []
    if scheme == "dns":
        # dns:[//authority/]host:port; grpc's default port of 443 is no backend's.
        name = rest.split("/")[-1] if rest.startswith("//") else rest
        return _endpoint_sources(_parsed(name))
    if scheme in ("ipv4", "ipv6"):
        sources = []
        for entry in rest.split(","):
            sources += _endpoint_sources(_parsed(entry))
        return sources
    return []


def _parsed(text: str) -> GrpcAddr:
    try:
        return parse_grpc_addr(text)
    except TargetError:
        return GrpcAddr(uri="unparsed:")


def _endpoint_sources(addr: GrpcAddr) -> list[Source]:
    if addr.uri is not None or len(addr.endpoints) != 1:
        return []
    endpoint = addr.endpoints[0]
    if endpoint.ip_version is None:
        return [Source(endpoint.host, endpoint.port)]
    return [Source(fixed=Address(endpoint.host, endpoint.port))]


class _Slot:
    __slots__ = ("address", "connecting", "connection", "retry_at", "serving", "watch")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.serving = False
        self.connection: Http2Connection | None = None
        self.connecting = False
        self.retry_at = 0.0
        self.watch: asyncio.Task[None] | None = None

    def stop_serving(self) -> None:
        """No new call; the calls under way finish on the connection, which then closes."""
        self.serving = False
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class BackendConnections:
    """The connections, one per SERVING backend address (see the module's docstring)."""

    def __init__(self, sources: Sequence[Source], resolve: Resolver) -> None:
        self._sources = list(sources)
        self._resolve = resolve
        #: The addresses each source gave last, kept while a name cannot be resolved.
        self._found: dict[Source, set[Address]] = {}
        self._slots: dict[Address, _Slot] = {}
        self._turns: list[_Slot] = []
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __bool__(self) -> bool:
        """Whether GRPC_ADDR names anything the pool can follow."""
        return bool(self._sources)

    @property
    def addresses(self) -> dict[Address, bool]:
        """Each address followed now, and whether it is SERVING."""
        return {slot.address: slot.serving for slot in self._turns}

    def start(self) -> None:
        """Start following the addresses (call from within the event loop)."""
        self._spawn(self._follow())

    def pick(self) -> Http2Connection | None:
        """The next SERVING address's connection, in turn; None while there is none. A SERVING address
        without a connection gets one opened in the background, for later calls."""
        turns = self._turns
        for _ in range(len(turns)):
            slot = turns[self._next % len(turns)]
            self._next += 1
            if not slot.serving:
                continue
            connection = slot.connection
            if connection is not None and not connection.closing:
                return connection
            if not slot.connecting and asyncio.get_running_loop().time() >= slot.retry_at:
                slot.connecting = True
                slot.connection = None
                self._spawn(self._connect(slot))
        return None

    async def _follow(self) -> None:
        while True:
            addresses: set[Address] = set()
            for source in self._sources:
                addresses |= await self._addresses_of(source)
            self._update(addresses)
            if all(source.fixed is not None for source in self._sources):
                return
            await asyncio.sleep(RESOLVE_INTERVAL_S)

    async def _addresses_of(self, source: Source) -> set[Address]:
        if source.fixed is not None:
            return {source.fixed}
        try:
            found = {Address(ip, source.port) for ip in await self._resolve(source.host)}
        except (StartupError, OSError) as exc:
            # A failed lookup keeps what it found before.
            logger.debug("cannot resolve backend host %s: %s", source.host, exc)
            return self._found.get(source, set())
        self._found[source] = found
        return found

    def _update(self, addresses: set[Address]) -> None:
        for address in set(self._slots) - addresses:
            slot = self._slots.pop(address)
            logger.info("backend address %s is gone: its frame batches stop", address.target)
            slot.stop_serving()
            if slot.watch is not None:
                slot.watch.cancel()
        for address in addresses - set(self._slots):
            slot = self._slots[address] = _Slot(address)
            slot.watch = self._spawn(self._watch(slot))
        self._turns = list(self._slots.values())

    async def _watch(self, slot: _Slot) -> None:
        target = slot.address.target
        channel = grpc.aio.insecure_channel(target, options=channel_options(balanced=False))

        def report(status: str) -> None:
            if status == SERVING:
                slot.serving = True
            elif slot.serving:
                slot.stop_serving()

        try:
            await watch_health(channel, target, report)
        finally:
            await channel.close()

    async def _connect(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        address = slot.address

        def closed(connection: Http2Connection) -> None:
            if slot.connection is connection:
                slot.connection = None

        def protocol() -> Http2Connection:
            return Http2Connection(address.authority, on_closed=closed)

        try:
            if address.path:
                _, connection = await loop.create_unix_connection(protocol, address.path)
            else:
                _, connection = await loop.create_connection(protocol, address.host, address.port)
        except OSError as exc:
            logger.debug("cannot open an HTTP/2 connection to %s: %s", address.target, exc)
            slot.retry_at = loop.time() + RETRY_S
            return
        finally:
            slot.connecting = False
        if self._closed or not slot.serving or self._slots.get(address) is not slot:
            connection.close()
            return
        logger.info("frame batches to %s go on an HTTP/2 connection of the proxy's own", address.target)
        slot.connection = connection

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop following, and close every connection, failing the calls still on them."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots.values():
            if slot.connection is not None:
                slot.connection.abort()
                slot.connection = None
