"""`GRPC_ADDR` parsed into the sources of the backends' addresses (`lipsync_proxy.backends` follows them).

`GRPC_ADDR` is one of:

* a gRPC target URI of the schemes `dns:` (`dns:///lipsync-server-headless:50051`: the name is resolved
  again as its addresses change, a Kubernetes headless Service), `ipv4:`/`ipv6:`
  (`ipv4:10.0.0.1:50051,10.0.0.2:50051`) or `unix:` (`unix:/run/lipsync.sock`);
* one `host:port`: a name is resolved again as with `dns:`;
* a comma list `h1:p1,h2:p2`: each name is resolved once at start, so a list does not follow DNS
  changes; use one `dns:///name:port` for a changing set of servers.

Everything here is pure; the resolution itself is done by the caller.
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
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class GrpcAddr:
    """A parsed `GRPC_ADDR`: a URI kept as it is, or one or more endpoints."""

    uri: str | None
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def names(self) -> list[str]:
        """Host names of a comma list that must be resolved before `channel_target` (none otherwise)."""
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


def endpoint_addresses(addr: GrpcAddr, resolved: Mapping[str, Sequence[str]]) -> list[tuple[Endpoint, str]]:
    """Each endpoint with each of its IP addresses."""
    pairs = []
    for endpoint in addr.endpoints:
        if endpoint.ip_version is not None:
            pairs.append((endpoint, endpoint.host))
            continue
        ips = resolved.get(endpoint.host)
        if not ips:
            raise TargetError(f"{endpoint.host!r} was not resolved to any address")
        pairs += [(endpoint, ip) for ip in ips]
    return pairs


@dataclass(frozen=True, slots=True)
class Address:
    """One backend address: an IP address `host` and `port`, or the `path` of a Unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def authority(self) -> str:
        """`host:port` (IPv6 in brackets), or `localhost` for a Unix socket: a call's `:authority`."""
        if self.path:
            return "localhost"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

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
            return _endpoint_sources(addr.endpoints[0])
        return [
            Source(str(e) if e.ip_version is not None else f"{e} ({ip})", fixed=Address(ip, e.port))
            for e, ip in endpoint_addresses(addr, resolved)
        ]
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
        return _endpoint_sources(_one_endpoint(name))
    if scheme in ("ipv4", "ipv6"):
        return [source for entry in rest.split(",") for source in _endpoint_sources(_one_endpoint(entry))]
    raise TargetError(f"the {scheme}: scheme is not supported; use dns:, ipv4:, ipv6:, unix: or host:port")


def _one_endpoint(text: str) -> Endpoint:
    parsed = parse_grpc_addr(text)
    if parsed.uri is not None or len(parsed.endpoints) != 1:
        raise TargetError(f"{text!r} is not one host:port")
    return parsed.endpoints[0]


def _endpoint_sources(endpoint: Endpoint) -> list[Source]:
    if endpoint.ip_version is None:
        return [Source(str(endpoint), endpoint.host, endpoint.port)]
    return [Source(str(endpoint), fixed=Address(endpoint.host, endpoint.port))]
