"""Backends that die, and a rolling restart of every process, under steady `lipsync.v2` load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lipsync_common.waiting import TIME_UNIT
from loadtests.chaos.clients import GOING_AWAY, closed_loop
from loadtests.chaos.ledger import (
    OK,
    Ledger,
    codes,
    errors,
    first_ok_after,
    last_error_after,
    latency_summary,
)
from loadtests.chaos.stack import DoubleProcess, double_stats, http_status, kill, terminate
from loadtests.processes import ProxyProcess, ServerProcess

pytestmark = pytest.mark.integration


async def seconds_until(condition: Callable[[], bool], timeout_s: float) -> float:
    """How long until `condition()` holds (polled every 20 ms); fails after `timeout_s`."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"not within {timeout_s:.0f} s")
        await asyncio.sleep(0.02)
    return round(time.monotonic() - started, 3)


async def test_a_killed_backend_gives_unavailable_and_is_used_again_once_restarted(
    logs_dir: Path, demo_cache: Path, record: dict[str, Any]
) -> None:
    server = ServerProcess(logs_dir, cache_dir=demo_cache)
    server.start()
    proxy = ProxyProcess(logs_dir, grpc_addr=server.address)
    proxy.start()
    ledger, stop = Ledger(), asyncio.Event()
    try:
        load = asyncio.create_task(closed_loop([proxy.ws_url], 4, 2, ledger, stop))
        await asyncio.sleep(2 * TIME_UNIT)
        killed = time.monotonic()
        kill(server)
        not_ready_s = await seconds_until(lambda: http_status(proxy.port, "/readyz") == 503, 10 * TIME_UNIT)
        await asyncio.sleep(3 * TIME_UNIT)
        restarted = time.monotonic()
        server = ServerProcess(logs_dir, port=server.port, cache_dir=demo_cache)
        await asyncio.to_thread(server.start)
        serving = time.monotonic()
        ready_s = await seconds_until(lambda: http_status(proxy.port, "/readyz") == 200, 10 * TIME_UNIT)
        await asyncio.sleep(2 * TIME_UNIT)
        stop.set()
        await asyncio.wait_for(load, 15 * TIME_UNIT)
    finally:
        stop.set()
        proxy_survived = proxy.process is not None and proxy.process.poll() is None
        proxy.stop()
        server.stop()
    ledger.finish_lost()
    outage = ledger.between(killed, serving)
    failed = errors(outage)
    recovered_s = first_ok_after(ledger.outcomes, serving)
    after = ledger.between(serving + (recovered_s or 0.0))
    record.update(
        requests=len(ledger.outcomes),
        outage_s=round(serving - killed, 2),
        server_restart_s=round(serving - restarted, 2),
        outage_codes=codes(outage),
        error_reply_latency=latency_summary(failed),
        readyz_false_after_s=not_ready_s,
        readyz_true_after_serving_s=ready_s,
        first_ok_after_serving_s=recovered_s,
        codes_after_recovery=codes(after),
        lost=codes(ledger.outcomes).get("LOST", 0),
        proxy_restarted=not proxy_survived,
    )

    assert proxy_survived
    assert set(codes(outage)) <= {OK, "UNAVAILABLE"}
    assert failed, "the outage produced no error: the fault was not under load"
    # A clear, quick error, not a hang until the deadline.
    assert latency_summary(failed)["p99_ms"] < 1000 * TIME_UNIT
    assert not_ready_s < 5 * TIME_UNIT
    assert recovered_s is not None
    assert recovered_s < 5 * TIME_UNIT
    assert set(codes(after)) == {OK}


async def test_when_one_of_two_backends_dies_no_request_fails_once_the_balancer_noticed(
    logs_dir: Path, record: dict[str, Any]
) -> None:
    first = DoubleProcess(logs_dir, delay_ms=5, payload_size=20_000)
    second = DoubleProcess(logs_dir, delay_ms=5, payload_size=20_000)
    first.start()
    second.start()
    proxy = ProxyProcess(logs_dir, grpc_addr=f"{first.address},{second.address}")
    proxy.start()
    ledger, stop = Ledger(), asyncio.Event()
    try:
        load = asyncio.create_task(closed_loop([proxy.ws_url], 4, 4, ledger, stop))
        await asyncio.sleep(2 * TIME_UNIT)
        before = double_stats(second.address)["calls"].get("frame", 0)
        killed = time.monotonic()
        kill(first)
        await asyncio.sleep(4 * TIME_UNIT)
        stop.set()
        await asyncio.wait_for(load, 15 * TIME_UNIT)
        served_by_survivor = double_stats(second.address)["calls"].get("frame", 0) - before
    finally:
        stop.set()
        proxy.stop()
        first.stop()
        second.stop()
    ledger.finish_lost()
    after_kill = ledger.between(killed)
    noticed_s = last_error_after(after_kill, killed) or 0.0
    after_notice = ledger.between(killed + noticed_s)
    record.update(
        requests=len(ledger.outcomes),
        requests_after_kill=len(after_kill),
        codes_after_kill=codes(after_kill),
        failed_after_kill=len(errors(after_kill)),
        balancer_noticed_within_s=noticed_s,
        codes_after_notice=codes(after_notice),
        served_by_survivor=served_by_survivor,
        latency_after_kill=latency_summary(after_kill),
        lost=codes(ledger.outcomes).get("LOST", 0),
    )

    assert noticed_s < 2 * TIME_UNIT
    assert set(codes(after_kill)) <= {OK, "UNAVAILABLE"}
    assert set(codes(after_notice)) == {OK}
    assert served_by_survivor >= len(after_notice)


async def test_a_rolling_restart_of_every_server_and_proxy_loses_no_accepted_request(
    logs_dir: Path, demo_cache: Path, record: dict[str, Any]
) -> None:
    servers = [ServerProcess(logs_dir, cache_dir=demo_cache) for _ in range(2)]
    for server in servers:
        server.start()
    addresses = ",".join(server.address for server in servers)
    proxies = [ProxyProcess(logs_dir, grpc_addr=addresses) for _ in range(2)]
    for proxy in proxies:
        proxy.start()
    ledger, stop = Ledger(), asyncio.Event()
    exits: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        urls = [proxy.ws_url for proxy in proxies]
        load = asyncio.create_task(closed_loop(urls, 6, 3, ledger, stop))
        await asyncio.sleep(2 * TIME_UNIT)
        for index, server in enumerate(servers):
            signalled = round(time.monotonic() - began, 3)
            code, took = await asyncio.to_thread(terminate, server)
            exits.append(
                {"process": f"server {index + 1}", "exit_code": code, "stop_s": took, "at_s": signalled}
            )
            servers[index] = ServerProcess(logs_dir, port=server.port, cache_dir=demo_cache)
            await asyncio.to_thread(servers[index].start)
            await asyncio.sleep(1 * TIME_UNIT)
        for index, proxy in enumerate(proxies):
            signalled = round(time.monotonic() - began, 3)
            code, took = await asyncio.to_thread(terminate, proxy)
            exits.append(
                {"process": f"proxy {index + 1}", "exit_code": code, "stop_s": took, "at_s": signalled}
            )
            proxies[index] = ProxyProcess(logs_dir, port=proxy.port, grpc_addr=addresses)
            await asyncio.to_thread(proxies[index].start)
            await asyncio.sleep(1 * TIME_UNIT)
        stop.set()
        stats = await asyncio.wait_for(load, 20 * TIME_UNIT)
    finally:
        stop.set()
        for process in [*proxies, *servers]:
            process.stop()
    ledger.finish_lost()
    record.update(
        requests=len(ledger.outcomes),
        codes=codes(ledger.outcomes),
        resent_after_1001=stats.resent,
        reconnects=stats.reconnects,
        closes=dict(stats.closes),
        latency=latency_summary(ledger.outcomes),
        exits=exits,
        failures=[{"code": o.code, "sent_at_s": round(o.sent - began, 3)} for o in errors(ledger.outcomes)],
        lost=codes(ledger.outcomes).get("LOST", 0),
    )

    assert codes(ledger.outcomes) == {OK: len(ledger.outcomes)}
    assert set(stats.closes) <= {GOING_AWAY}
    assert all(exit["exit_code"] == 0 for exit in exits)
