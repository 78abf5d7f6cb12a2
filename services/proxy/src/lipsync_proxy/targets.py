"""`GRPC_ADDR` parsed into the sources of the backends' addresses, which `lipsync_proxy.backends` follows.

A source is a host name, resolved again and again (a `dns:` target, one `host:port`), or a fixed
address (an IP address, `unix:`, and each of a comma list's addresses: its names are resolved once at
start); the forms are listed in the proxy README. Pure: the caller resolves the names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Target URI schemes grpc-core resolves; anything else before a colon is a host name. The proxy follows
#: the first four (`sources_of`); the others are refused at start with a clear message.
URI_SCHEMES = frozenset({"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds", "google-c2p"})
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)


class TargetError(ValueError):
    """`GRPC_ADDR` is not a target URI, a host:port or a comma list of them."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One `host:port` of a comma list; `host` has no brackets."""

    host: str
    port: int

    @property
    def ip_version(self) -> int | None:
        """4 or 6 when `host` is an IP literal, None for a name."""
        try:
            return ipaddress.ip_address(self.host).version
        except ValueError:
            return None

    def __str__(self) -> str:
        return _host_port(self.host, self.port)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class GrpcAddr:
    """A parsed `GRPC_ADDR`: a URI kept as it is, or one or more endpoints."""

    uri: str | None
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def names(self) -> list[str]:
        """The host names of a comma list, resolved once at start (`sources_of`); none otherwise."""
        if self.uri is not None or len(self.endpoints) == 1:
            return []
        return sorted({e.host for e in self.endpoints if e.ip_version is None})


def parse_grpc_addr(text: str) -> GrpcAddr:
    """Parse `GRPC_ADDR`; raise TargetError with a clear message when it is none of the accepted forms."""
    value = text.strip()
    if not value:
        raise TargetError("empty; expected host:port, h1:p1,h2:p2 or a gRPC target URI")
    scheme = value.split(":", 1)[0].lower()
    if scheme in URI_SCHEMES:
        if value.endswith(":") or value == scheme:
            raise TargetError(f"the {scheme}: target names nothing")
        return GrpcAddr(uri=value)
    entries = [entry.strip() for entry in value.split(",")]
    return GrpcAddr(uri=None, endpoints=tuple(_parse_endpoint(entry) for entry in entries))


def _parse_endpoint(entry: str) -> Endpoint:
    if not entry:
        raise TargetError("an empty entry in the comma list")
    if entry.startswith("["):
        host, sep, port_text = entry[1:].partition("]:")
        if not sep:
            raise TargetError(f"{entry!r}: an IPv6 address needs the form [addr]:port")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(host)
        except ValueError:
            raise TargetError(f"{entry!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = entry.rpartition(":")
        if not sep or not host:
            raise TargetError(f"{entry!r}: expected host:port")
        if ":" in host:
            raise TargetError(f"{entry!r}: write an IPv6 address as [addr]:port")
        if not _HOSTNAME.fullmatch(host):
            raise TargetError(f"{entry!r}: {host!r} is not a host name or IP address")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"{entry!r}: the port must be 1..65535")
    return Endpoint(host, int(port_text))


@dataclass(frozen=True, slots=True)
class Address:
    """One backend address: an IP address `host` and `port`, or the `path` of a Unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def authority(self) -> str:
        """`host:port` (IPv6 in brackets), or `localhost` for a Unix socket: a call's `:authority`."""
        return "localhost" if self.path else _host_port(self.host, self.port)

    @property
    def target(self) -> str:
        """The gRPC target of exactly this address."""
        if self.path:
            return f"unix:{self.path}"
        return f"ipv6:{self.authority}" if ":" in self.host else f"ipv4:{self.authority}"

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else self.authority


@dataclass(frozen=True, slots=True)
class Source:
    """Where addresses come from: a `host` name to resolve (with its `port`), or one `fixed` address.
    `name` is how GRPC_ADDR wrote it (/health and the metrics name each address by it)."""

    name: str
    host: str = ""
    port: int = 0
    fixed: Address | None = None


def sources_of(addr: GrpcAddr, resolved: Mapping[str, Sequence[str]]) -> list[Source]:
    """The sources of a parsed `GRPC_ADDR`; `resolved` holds the comma list's names resolved at start.
    Raises TargetError for a target scheme the proxy does not follow (xds, vsock, ...)."""
    if addr.uri is None:
        if len(addr.endpoints) == 1:
            return [_source(addr.endpoints[0])]
        sources = []
        for e in addr.endpoints:
            if e.ip_version is not None:
                sources.append(_source(e))
            elif ips := resolved.get(e.host):
                sources += [Source(f"{e} ({ip})", fixed=Address(ip, e.port)) for ip in ips]
            else:
                raise TargetError(f"{e.host!r} was not resolved to any address")
        return sources
    scheme, _, rest = addr.uri.partition(":")
    scheme = scheme.lower()
    if scheme == "unix":
        path = rest[2:] if rest.startswith("//") else rest
        if not path.startswith("/"):
            raise TargetError("a unix: target needs an absolute path")
        return [Source(addr.uri, fixed=Address(path=path))]
    if scheme == "dns":
        # dns:[//authority/]host:port; grpc's default port of 443 is no backend's.
        name = rest.split("/")[-1] if rest.startswith("//") else rest
        return [_source(_parse_endpoint(name.strip()))]
    if scheme in ("ipv4", "ipv6"):
        return [_source(_parse_endpoint(entry.strip())) for entry in rest.split(",")]
    raise TargetError(f"the {scheme}: scheme is not supported; use dns:, ipv4:, ipv6:, unix: or host:port")


def _source(endpoint: Endpoint) -> Source:
    """A host name, resolved again and again, or a fixed IP address."""
    if endpoint.ip_version is None:
        return Source(str(endpoint), endpoint.host, endpoint.port)
    return Source(str(endpoint), fixed=Address(endpoint.host, endpoint.port))
