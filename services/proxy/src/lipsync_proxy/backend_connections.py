"""The proxy's own HTTP/2 connections to the backends (`lipsync_proxy.http2`), for frame batches.

One connection per backend that the health monitor watches, used while that backend is SERVING, the
backends in turn. A batch must not go where grpc's balancer would not send a call, so only a backend
that is exactly one address can have one: the monitor then watches the very address the connection
goes to. That is a `host:port` whose name has one address, each entry of a comma list, a one-address
`ipv4:`/`ipv6:` target, or `unix:`. A `dns:` target (grpc re-resolves it and balances over all its
addresses: a Kubernetes headless Service), a name with several addresses or any other scheme has no
connection of its own, and batches go through grpc.aio as before. So do they while no backend with a
connection is SERVING or connected.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from lipsync_proxy.http2 import Http2Connection
from lipsync_proxy.targets import Backend, TargetError, parse_grpc_addr

logger = logging.getLogger(__name__)

#: A connection that failed to open is tried again no sooner than this.
RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class Address:
    """Where one backend's connection goes: `host` (an IP address or a name) and `port`, or `path`
    of a Unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def authority(self) -> str:
        if self.path:
            return "localhost"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def address_of(target: str) -> Address | None:
    """The one address of a backend's target, or None when it may be several (see the module)."""
    scheme, _, rest = target.partition(":")
    if scheme == "unix":
        path = rest[2:] if rest.startswith("//") else rest
        return Address(path=path) if path.startswith("/") else None
    if scheme in ("ipv4", "ipv6"):
        if "," in rest:
            return None
        target = rest
    try:
        addr = parse_grpc_addr(target)
    except TargetError:
        return None
    if addr.uri is not None or len(addr.endpoints) != 1:
        return None
    endpoint = addr.endpoints[0]
    return Address(endpoint.host, endpoint.port)


class _Slot:
    __slots__ = ("address", "connecting", "connection", "name", "retry_at", "serving")

    def __init__(self, name: str, address: Address) -> None:
        self.name = name
        self.address = address
        self.serving = False
        self.connection: Http2Connection | None = None
        self.connecting = False
        self.retry_at = 0.0


class BackendConnections:
    """The connections, one per backend that can have one (see the module's docstring)."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self._slots = [
            _Slot(backend.name, address)
            for backend in backends
            if (address := address_of(backend.target)) is not None
        ]
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __bool__(self) -> bool:
        """Whether any backend can have a connection."""
        return bool(self._slots)

    def set_serving(self, name: str, serving: bool) -> None:
        """The monitor saw backend `name` turn SERVING (`serving`) or stop serving. A backend that
        stops gets no new call; the calls it has finish on its connection, which then closes."""
        for slot in self._slots:
            if slot.name == name:
                slot.serving = serving
                if not serving and slot.connection is not None:
                    slot.connection.close()
                    slot.connection = None

    def pick(self) -> Http2Connection | None:
        """The next SERVING backend's connection, in turn; None while there is none. A SERVING backend
        without a connection gets one opened in the background, for later calls."""
        slots = self._slots
        for _ in range(len(slots)):
            slot = slots[self._next % len(slots)]
            self._next += 1
            if not slot.serving:
                continue
            connection = slot.connection
            if connection is not None and not connection.closing:
                return connection
            if not slot.connecting and asyncio.get_running_loop().time() >= slot.retry_at:
                self._open(slot)
        return None

    def _open(self, slot: _Slot) -> None:
        slot.connecting = True
        slot.connection = None
        task = asyncio.ensure_future(self._connect(slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                found = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
                ips = sorted({str(info[4][0]) for info in found})
                if len(ips) != 1:
                    # grpc balances over all of them, with health checks of its own: so do its calls.
                    logger.info(
                        "backend %s has %d addresses: its frame batches go through grpc", slot.name, len(ips)
                    )
                    slot.retry_at = loop.time() + 30 * RETRY_S
                    return
                _, connection = await loop.create_connection(protocol, ips[0], address.port)
        except OSError as exc:
            logger.debug("cannot open an HTTP/2 connection to backend %s: %s", slot.name, exc)
            slot.retry_at = loop.time() + RETRY_S
            return
        finally:
            slot.connecting = False
        if self._closed or not slot.serving:
            connection.close()
            return
        logger.info("frame batches to backend %s go on an HTTP/2 connection of the proxy's own", slot.name)
        slot.connection = connection

    async def close(self) -> None:
        """Close every connection, failing the calls still on them."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in self._slots:
            if slot.connection is not None:
                slot.connection.abort()
                slot.connection = None
