"""Frames sent to each backend address and how many of them failed: the seed Go proxy's per-backend
`total_requests` and `error_count`, which `/health` reports.

The transport tells `record` of every call once its outcome is known, with the address that served it
when it knows it (a call on the proxy's own HTTP/2 connection to one address). A call through the
grpc.aio channel has no address to tell: grpc.aio does not expose which subchannel its round_robin
picked, so such calls are recorded under None. A deployment with one backend is told all of them; one
with several can attribute only the calls that name their address (`/health` reports both).

A failure is a call that ended with a gRPC status other than OK (its deadline passed, its backend
was unreachable, or the backend refused it), each frame it carried counted once, as the seed counted
its failed calls; a frame refused inside an answered batch is that request's own error.
"""

from __future__ import annotations

import ipaddress

#: Where a call through the grpc.aio channel is recorded: its address is not known.
CHANNEL = None


def address_key(address: str) -> str:
    """One spelling of a backend address, whoever wrote it: a gRPC `ipv4:`/`ipv6:` target of one
    address, an own connection's authority, `host:port`; an IPv4-mapped IPv6 address is its IPv4."""
    text = address
    for scheme in ("ipv4:", "ipv6:"):
        text = text.removeprefix(scheme)
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            return text
        mapped = ip.ipv4_mapped
        return f"{mapped}:{port}" if mapped is not None else f"[{ip}]:{port}"
    return text


class AddressStats:
    """Frames and failed frames per backend address (`address_key`), and those of unknown address."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str | None, list[int]] = {}

    def record(self, address: str | None, frames: int, failed: bool) -> None:
        """A call that carried `frames` frames to `address` (None: through the grpc.aio channel) is over."""
        counts = self._counts.get(address)
        if counts is None:
            counts = self._counts[address] = [0, 0]
        counts[0] += frames
        if failed:
            counts[1] += frames

    def totals(self, address: str | None) -> tuple[int, int]:
        """Frames and failed frames recorded for `address` (any spelling `address_key` knows), or for
        the calls of unknown address (None)."""
        key = None if address is None else address_key(address)
        found = [0, 0]
        for recorded, (frames, failed) in self._counts.items():
            if (recorded is None and key is None) or (
                recorded is not None and key is not None and address_key(recorded) == key
            ):
                found[0] += frames
                found[1] += failed
        return found[0], found[1]

    def all(self) -> tuple[int, int]:
        """Frames and failed frames of every address, known or not."""
        return sum(c[0] for c in self._counts.values()), sum(c[1] for c in self._counts.values())
