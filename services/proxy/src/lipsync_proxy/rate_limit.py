"""Rate limits per connection and per client address, and a cap on each address's connections.

A connection reads its next message only when its own token bucket (`--rate-limit` messages per
second) and its client address's bucket (`--address-rate-limit`, shared by every connection from
that address) both have a token for it. A client over its rate is slowed down: its messages wait in
TCP until their turn, so it costs the proxy neither buffers nor error replies, and other clients do
not notice it. Each bucket holds one second's worth of tokens, so a client may burst that much.

A new connection from an address that already has `--max-connections-per-address` open is refused.
Addresses are tracked only while they have a connection open, so this takes memory in proportion to
the open connections, never to the addresses ever seen. Every limit is off at 0.

Pure: the clock is passed in; the connection handler does the waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


class TooManyConnectionsError(Exception):
    """An address already has its maximum of connections open; the message is safe to send."""


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. A token taken when none is left is borrowed
    from the future: the taker is told how long to wait for it, and the next taker waits longer."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate} and {burst}")
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def reserve(self, now: float) -> float:
        """Take one token at `now`; the seconds until it is due (0 when one was saved up)."""
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


def bucket(rate: float, now: float) -> TokenBucket | None:
    """A bucket of `rate` a second holding one second's worth, or None for no limit (rate 0)."""
    return TokenBucket(rate, max(1.0, rate), now) if rate > 0 else None


@dataclass(eq=False)
class _Address:
    connections: int
    bucket: TokenBucket | None


@dataclass(eq=False)
class Throttle:
    """The limits of one connection: its own bucket and its address's."""

    address: str
    own: TokenBucket | None
    shared: TokenBucket | None

    @property
    def limited(self) -> bool:
        """Whether any rate applies; an unlimited connection need not ask."""
        return self.own is not None or self.shared is not None

    def reserve(self, now: float) -> float:
        """Take a token from each bucket for the next message; the seconds to wait before reading it."""
        own = self.own.reserve(now) if self.own is not None else 0.0
        shared = self.shared.reserve(now) if self.shared is not None else 0.0
        return max(own, shared)


@dataclass(eq=False)
class ClientLimits:
    """The rate limits and connection cap of one proxy, and the addresses with connections open."""

    rate: float = 0.0
    address_rate: float = 0.0
    max_connections_per_address: int = 0
    clock: Callable[[], float] = time.monotonic
    _addresses: dict[str, _Address] = field(default_factory=dict, init=False)

    def open(self, address: str) -> Throttle:
        """Count a new connection from `address` and return its throttle; raise
        TooManyConnectionsError when the address already has its maximum open."""
        now = self.clock()
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address(0, bucket(self.address_rate, now))
        elif 0 < self.max_connections_per_address <= entry.connections:
            raise TooManyConnectionsError(
                f"this address already has {entry.connections} connections open "
                f"(the limit is {self.max_connections_per_address})"
            )
        entry.connections += 1
        return Throttle(address, bucket(self.rate, now), entry.bucket)

    def close(self, throttle: Throttle) -> None:
        """The connection of `throttle` has ended."""
        entry = self._addresses.get(throttle.address)
        if entry is None:
            return
        entry.connections -= 1
        if entry.connections <= 0:
            del self._addresses[throttle.address]

    @property
    def addresses(self) -> int:
        """Client addresses with a connection open."""
        return len(self._addresses)


def client_address(peer: object, forwarded: str | None) -> str:
    """The client's address: the last entry of `forwarded` (the value of `--client-address-header`,
    whose last entry is the one the trusted reverse proxy in front added) when given, else the host
    of the TCP `peer` (a socket address tuple)."""
    if forwarded:
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"
