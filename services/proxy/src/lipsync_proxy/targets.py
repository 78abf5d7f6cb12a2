"""`GRPC_ADDR` parsed into the gRPC target of the proxy's channel and the backends it watches.

`GRPC_ADDR` is one of:

* a gRPC target URI (`dns:///lipsync-server-headless:50051`, `ipv4:10.0.0.1:50051,10.0.0.2:50051`,
  `unix:/run/lipsync.sock`): given to gRPC as it is, so a `dns:` name is re-resolved as its addresses
  change (a Kubernetes headless Service) and gRPC's round_robin spreads calls over all of them;
* one `host:port`: also given as it is (gRPC's default resolver is DNS);
* a comma list `h1:p1,h2:p2`: one gRPC target cannot name several hosts, and the `ipv4:`/`ipv6:`
  schemes take IP literals only, so each name is resolved once at start and the addresses become one
  `ipv4:` (or, when any is IPv6, `ipv6:` with IPv4-mapped) target. A list therefore does not follow
  DNS changes; use one `dns:///name:port` for a changing set of servers.

Everything here is pure; the resolution itself is done by the caller.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Target URI schemes grpc-core resolves; anything else before a colon is a host name.
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


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend as /health lists it: `name` as configured, `target` the channel target to watch."""

    name: str
    target: str


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


def _joined(ips_and_ports: Sequence[tuple[str, int]]) -> str:
    if all(ipaddress.ip_address(ip).version == 4 for ip, _ in ips_and_ports):
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in ips_and_ports)
    mapped = []
    for ip, port in ips_and_ports:
        address = ipaddress.ip_address(ip)
        v6 = ipaddress.IPv6Address(f"::ffff:{address}") if address.version == 4 else address
        mapped.append(f"[{v6}]:{port}")
    return "ipv6:" + ",".join(mapped)


def channel_target(addr: GrpcAddr, resolved: Mapping[str, Sequence[str]]) -> str:
    """The one target of the proxy's channel; `resolved` maps each of `addr.names` to its IPs."""
    if addr.uri is not None:
        return addr.uri
    if len(addr.endpoints) == 1:
        return str(addr.endpoints[0])
    return _joined([(ip, endpoint.port) for endpoint, ip in endpoint_addresses(addr, resolved)])


def backends(addr: GrpcAddr, resolved: Mapping[str, Sequence[str]]) -> list[Backend]:
    """The backends whose grpc.health.v1 status the proxy watches, one per address it balances over.

    A URI or a single host:port is one backend (its health is watched on one of its addresses); a
    comma list is one backend per resolved address."""
    if addr.uri is not None:
        return [Backend(addr.uri, addr.uri)]
    if len(addr.endpoints) == 1:
        return [Backend(str(addr.endpoints[0]), str(addr.endpoints[0]))]
    found = []
    for endpoint, ip in endpoint_addresses(addr, resolved):
        name = str(endpoint) if endpoint.ip_version is not None else f"{endpoint} ({ip})"
        found.append(Backend(name, _joined([(ip, endpoint.port)])))
    return found
