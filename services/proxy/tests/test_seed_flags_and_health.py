"""The seed Go proxy's real flags (`-grpc-addrs`, `-start-port`/`-num-servers`) and the keys its
monitors read in `/health`, on a proxy in front of fake backends."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from lipsync_common.waiting import TIME_UNIT, eventually, wait_until

from .processes import DoubleProcess, ProxyProcess, v1_request

pytestmark = pytest.mark.integration


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports nothing listens on."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + count):
                held = socket.socket()
                sockets.append(held)
                held.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for held in sockets:
                held.close()
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.fixture(scope="module")
def two_doubles(logs_dir: Path) -> Iterator[list[DoubleProcess]]:
    first = consecutive_free_ports(2)
    doubles = [DoubleProcess(logs_dir, port=port) for port in (first, first + 1)]
    for double in doubles:
        double.start()
    try:
        for double in doubles:
            double.wait_ready(20 * TIME_UNIT)
        yield doubles
    finally:
        for double in doubles:
            double.stop()


def start_proxy(logs_dir: Path, *args: str) -> ProxyProcess:
    process = ProxyProcess(logs_dir, args=args)
    process.start().wait_ready(20 * TIME_UNIT)
    return process


def health(proxy: ProxyProcess) -> dict[str, object]:
    body = proxy.health().json()
    assert isinstance(body, dict)
    return body


def test_start_port_and_num_servers_name_consecutive_localhost_backends(
    two_doubles: list[DoubleProcess], logs_dir: Path
) -> None:
    first = two_doubles[0].port
    proxy = start_proxy(logs_dir, "-start-port", str(first), "-num-servers", "2")
    try:
        wait_until(lambda: health(proxy).get("healthy_count") == 2, 20 * TIME_UNIT, "both backends SERVING")
        body = health(proxy)
    finally:
        proxy.stop()
    assert body["total_backends"] == 2
    backends = body["backends"]
    assert isinstance(backends, list)
    assert [b["address"] for b in backends] == [f"localhost:{first}", f"localhost:{first + 1}"]
    assert all(b["healthy"] is True for b in backends)


async def test_grpc_addrs_backends_count_their_frames_and_errors_per_address(
    two_doubles: list[DoubleProcess], logs_dir: Path
) -> None:
    addresses = [double.address for double in two_doubles]
    proxy = start_proxy(logs_dir, "-grpc-addrs", ",".join(addresses))
    try:
        await asyncio.to_thread(
            wait_until, lambda: health(proxy).get("healthy_count") == 2, 20 * TIME_UNIT, "both SERVING"
        )

        def counts() -> list[tuple[int, int]]:
            backends = health(proxy)["backends"]
            assert isinstance(backends, list)
            return [(b["total_requests"], b["error_count"]) for b in backends]

        async with connect(proxy.ws_url, max_size=None) as ws:

            async def frames_reached_both() -> bool:
                await ws.send(v1_request("demo", 1))
                await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
                return all(total > 0 for total, _ in await asyncio.to_thread(counts))

            for _ in range(int(200 * TIME_UNIT)):
                if await frames_reached_both():
                    break
            else:
                pytest.fail("frames never reached both backends")
            await ws.send(v1_request("demo", 100_000))  # outside the double's frames: OUT_OF_RANGE
            error = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT))
        assert error["code"] == "OUT_OF_RANGE"
        await eventually(lambda: sum(e for _, e in counts()) >= 1, "the failed frame counted")
        body = health(proxy)
    finally:
        proxy.stop()
    backends = body["backends"]
    assert isinstance(backends, list)
    assert [b["address"] for b in backends] == addresses
    assert body["total_backends"] == 2
    assert body["healthy_count"] == 2
    assert body["total_requests"] == sum(b["total_requests"] for b in backends)
    assert body["error_count"] == sum(b["error_count"] for b in backends) >= 1


def test_the_seed_backend_flags_and_grpc_addr_are_one_setting(logs_dir: Path) -> None:
    process = ProxyProcess(logs_dir, grpc_addr="127.0.0.1:1", args=["-grpc-addrs", "127.0.0.1:2"])
    process.start()
    assert process.process is not None
    assert process.process.wait(20 * TIME_UNIT) == 2
    assert "-grpc-addr and -grpc-addrs name the same backends" in process.output()
