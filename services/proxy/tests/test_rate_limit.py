"""Rate limits per connection and per client address, the per-address connection cap, their flags, and
both through the real proxy process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from lipsync_common.waiting import TIME_UNIT, wait_until
from lipsync_proxy.rate_limit import ClientLimits, TokenBucket, TooManyConnectionsError, client_address
from lipsync_proxy.settings import SettingsError, settings_from_args

from .processes import DoubleProcess, ProxyProcess, http_get, v1_request


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_one_seconds_worth_through_at_once_then_spaces_the_rest() -> None:
    bucket = TokenBucket(rate=10, burst=10, now=0.0)

    waits = [bucket.reserve(0.0) for _ in range(12)]

    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1, 0.2])


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        bucket.reserve(0.0)

    assert bucket.reserve(0.1) == 0.0
    assert bucket.reserve(0.1) == pytest.approx(0.1)
    assert [bucket.reserve(60.0) for _ in range(5)] == [0.0] * 5
    assert bucket.reserve(60.0) == pytest.approx(0.1)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.floats(0.5, 500),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_a_bucket_never_admits_more_than_its_burst_and_rate_allow(rate: float, gaps: list[float]) -> None:
    burst = max(1.0, rate)
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    due = []
    for gap in gaps:
        now += gap
        due.append(now + bucket.reserve(now))

    # However the takers arrive, the k-th token is never due before (k - burst) / rate.
    for index, when in enumerate(sorted(due)):
        assert when >= (index + 1 - burst) / rate - 1e-9


def test_connections_from_one_address_share_its_bucket() -> None:
    clock = ManualClock()
    limits = ClientLimits(rate=0, address_rate=2, clock=clock)
    first, second = limits.open("10.0.0.1"), limits.open("10.0.0.1")
    other = limits.open("10.0.0.2")

    waits = [first.reserve(clock.now), second.reserve(clock.now), first.reserve(clock.now)]

    assert waits == [0.0, 0.0, pytest.approx(0.5)]
    assert other.reserve(clock.now) == 0.0


def test_a_connection_has_a_bucket_of_its_own() -> None:
    clock = ManualClock()
    limits = ClientLimits(rate=1, clock=clock)
    first, second = limits.open("10.0.0.1"), limits.open("10.0.0.1")

    assert [first.reserve(clock.now), second.reserve(clock.now)] == [0.0, 0.0]
    assert first.reserve(clock.now) == pytest.approx(1.0)


def test_without_limits_a_connection_is_not_throttled() -> None:
    throttle = ClientLimits().open("10.0.0.1")

    assert not throttle.limited
    assert throttle.reserve(0.0) == 0.0


def test_an_address_at_its_connection_cap_is_refused_until_one_closes() -> None:
    limits = ClientLimits(max_connections_per_address=2)
    first = limits.open("10.0.0.1")
    limits.open("10.0.0.1")

    with pytest.raises(TooManyConnectionsError, match="2 connections open"):
        limits.open("10.0.0.1")
    limits.open("10.0.0.2")
    limits.close(first)
    limits.open("10.0.0.1")


def test_an_address_is_forgotten_with_its_last_connection() -> None:
    limits = ClientLimits(address_rate=5)
    throttles = [limits.open(f"10.0.0.{n}") for n in range(100)]
    assert limits.addresses == 100

    for throttle in throttles:
        limits.close(throttle)

    assert limits.addresses == 0


@pytest.mark.parametrize(
    ("peer", "forwarded", "address"),
    [
        (("127.0.0.1", 5000), None, "127.0.0.1"),
        (("::1", 5000, 0, 0), None, "::1"),
        (("10.1.1.1", 5000), "203.0.113.7", "203.0.113.7"),
        # X-Forwarded-For: what the client claimed first, then what nginx saw, last.
        (("10.1.1.1", 5000), "1.2.3.4, 203.0.113.7", "203.0.113.7"),
        (("10.1.1.1", 5000), " ", "10.1.1.1"),
        (None, None, "unknown"),
    ],
)
def test_the_client_address_is_the_trusted_header_else_the_peer(
    peer: object, forwarded: str | None, address: str
) -> None:
    assert client_address(peer, forwarded) == address


def test_the_limits_are_read_from_flags_and_the_environment() -> None:
    environ = {"PROXY_RATE_LIMIT": "50", "PROXY_ADDRESS_RATE_LIMIT": "200"}
    parsed = settings_from_args(
        ["--max-connections-per-address", "16", "--client-address-header", "X-Real-IP"], environ
    )

    assert (parsed.rate_limit, parsed.address_rate_limit) == (50.0, 200.0)
    assert (parsed.max_connections_per_address, parsed.client_address_header) == (16, "X-Real-IP")
    assert settings_from_args([], {}).rate_limit == 0.0


def test_bad_limits_are_reported_together() -> None:
    with pytest.raises(SettingsError) as refused:
        settings_from_args(
            ["--rate-limit", "-1", "--max-connections-per-address", "x", "--client-address-header", "a b"], {}
        )

    message = str(refused.value)
    assert "--rate-limit -1" in message
    assert "--max-connections-per-address 'x'" in message
    assert "--client-address-header 'a b'" in message


# --- through the real proxy ------------------------------------------------------------------------

RATE = 20


@pytest.fixture(scope="module")
def limited_proxy(double: DoubleProcess, logs_dir: Path) -> Iterator[ProxyProcess]:
    """A proxy allowing 20 messages a second per connection and two connections per address."""
    args = ["--rate-limit", str(RATE), "--max-connections-per-address", "2", "--quiet-frames"]
    process = ProxyProcess(logs_dir, grpc_addr=double.address, args=args)
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.integration
async def test_a_flooding_connection_is_slowed_to_its_rate_and_every_request_is_answered(
    limited_proxy: ProxyProcess,
) -> None:
    count = 2 * RATE + 10  # a second's burst, then a second and a half at the rate
    async with connect(limited_proxy.ws_url) as ws:
        started = time.monotonic()
        for _ in range(count):
            await ws.send(v1_request("demo", 1))
        replies = [await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT) for _ in range(count)]
        elapsed = time.monotonic() - started

    assert all(isinstance(reply, bytes) and reply[:2] == b"\xff\xd8" for reply in replies)
    assert elapsed >= (count - RATE) / RATE * 0.9


def open_connections(proxy: ProxyProcess) -> float:
    text = http_get(proxy.port, "/metrics").body.decode()
    gauges = [line for line in text.splitlines() if line.startswith("lipsync_proxy_open_connections{")]
    return sum(float(line.split()[-1]) for line in gauges)


@pytest.mark.integration
async def test_a_third_connection_from_one_address_is_closed_with_1013(limited_proxy: ProxyProcess) -> None:
    # A connection counts until its handler has finished, a moment after the client saw it close.
    wait_until(lambda: open_connections(limited_proxy) == 0, 5 * TIME_UNIT, "no connection open")
    async with connect(limited_proxy.ws_url) as first, connect(limited_proxy.ws_url) as second:
        async with connect(limited_proxy.ws_url) as third:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(third.recv(), 5 * TIME_UNIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        await first.send(v1_request("demo", 2))
        await second.send(v1_request("demo", 3))
        assert isinstance(await asyncio.wait_for(first.recv(), 5 * TIME_UNIT), bytes)
        assert isinstance(await asyncio.wait_for(second.recv(), 5 * TIME_UNIT), bytes)
