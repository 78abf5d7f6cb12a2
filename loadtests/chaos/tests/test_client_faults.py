"""Clients that misbehave: stop reading, vanish mid-request, flood, or send malformed messages."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from lipsync_common.waiting import TIME_UNIT
from lipsync_protocol import v1, v2
from loadtests.chaos.clients import RawClient, V2Connection, closed_loop, open_loop
from loadtests.chaos.ledger import OK, Ledger, Outcome, codes, latency_summary
from loadtests.chaos.stack import DoubleProcess, double_stats, proxy_metric
from loadtests.processes import ProxyProcess
from loadtests.procstat import rss_kib

pytestmark = pytest.mark.integration

PAYLOAD = 98_432
MAX_INFLIGHT = 8


async def wait_for(condition: Any, timeout_s: float, what: str) -> float:
    """Seconds until `condition()` holds (polled every 20 ms in a thread); fails after `timeout_s`."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(0.02)
    return round(time.monotonic() - started, 3)


async def test_clients_that_stop_reading_cost_bounded_memory_and_others_do_not_notice(
    logs_dir: Path, record: dict[str, Any]
) -> None:
    slow_count, asked_each = 40, 200
    double = DoubleProcess(logs_dir, payload_size=PAYLOAD)
    double.start()
    proxy = ProxyProcess(logs_dir, grpc_addr=double.address, extra_args=("--ping-interval", "2"))
    proxy.start()
    slow: list[RawClient] = []
    try:
        before, stop = Ledger(), asyncio.Event()
        load = asyncio.create_task(closed_loop([proxy.ws_url], 1, 1, before, stop))
        await asyncio.sleep(2 * TIME_UNIT)
        stop.set()
        await asyncio.wait_for(load, 10 * TIME_UNIT)
        rss_before = rss_kib(proxy.pid)

        sent = 0
        for _ in range(slow_count):
            client = RawClient.open(proxy.port, receive_buffer=4096)
            slow.append(client)
            for frame_id in range(asked_each):
                if not client.send(v1.encode_request(v1.FrameRequest("demo", frame_id))):
                    break
                sent += 1
        stalled = time.monotonic()
        during, stop = Ledger(), asyncio.Event()
        load = asyncio.create_task(closed_loop([proxy.ws_url], 1, 1, during, stop))
        peak = rss_before
        for _ in range(30):
            await asyncio.sleep(0.1 * TIME_UNIT)
            peak = max(peak, rss_kib(proxy.pid))
        stop.set()
        await asyncio.wait_for(load, 10 * TIME_UNIT)
        open_during = proxy_metric(proxy.port, "lipsync_proxy_open_connections")
        # The slow clients take no data: the proxy drops them and frees what they held.
        await wait_for(
            lambda: proxy_metric(proxy.port, "lipsync_proxy_open_connections") == 0,
            20 * TIME_UNIT,
            "the slow clients dropped",
        )
        dropped_s = round(time.monotonic() - stalled, 2)
        rss_after = rss_kib(proxy.pid)
        # A second wave: what the first one held was freed (kept by the heap or given back to the
        # kernel once idle), so both waves together stay within one wave's bound.
        for client in slow:
            client.close()
        slow = [RawClient.open(proxy.port, receive_buffer=4096) for _ in range(slow_count)]
        for client in slow:
            for frame_id in range(asked_each):
                if not client.send(v1.encode_request(v1.FrameRequest("demo", frame_id))):
                    break
        second_peak = rss_after
        for _ in range(20):
            await asyncio.sleep(0.1 * TIME_UNIT)
            second_peak = max(second_peak, rss_kib(proxy.pid))
    finally:
        for client in slow:
            client.close()
        proxy.stop()
        double.stop()
    before.finish_lost()
    during.finish_lost()
    growth_mib = (peak - rss_before) / 1024
    # Each slow connection holds at most its in-flight replies (and websockets' own small buffers).
    bound_mib = slow_count * (MAX_INFLIGHT + 1) * PAYLOAD / 2**20 + 32
    latency_before, latency_during = latency_summary(before.outcomes), latency_summary(during.outcomes)
    record.update(
        slow_clients=slow_count,
        requests_sent_by_slow_clients=sent,
        replies_they_asked_for_mib=round(sent * PAYLOAD / 2**20, 1),
        open_connections_during=open_during,
        proxy_rss_before_mib=round(rss_before / 1024, 1),
        proxy_rss_growth_mib=round(growth_mib, 1),
        proxy_rss_bound_mib=round(bound_mib, 1),
        proxy_rss_after_drop_mib=round(rss_after / 1024, 1),
        proxy_rss_second_wave_over_start_mib=round((second_peak - rss_before) / 1024, 1),
        slow_clients_dropped_after_s=dropped_s,
        stall_patience_s=4,
        other_client_before=latency_before,
        other_client_during=latency_during,
        other_client_codes=codes(during.outcomes),
        requests=len(before.outcomes) + len(during.outcomes),
        lost=codes(before.outcomes + during.outcomes).get("LOST", 0),
    )

    assert growth_mib < bound_mib
    assert (second_peak - rss_before) / 1024 < bound_mib
    assert sent > slow_count * MAX_INFLIGHT
    assert codes(during.outcomes) == {OK: len(during.outcomes)}
    assert latency_during["p99_ms"] < max(5 * latency_before["p99_ms"], 100 * TIME_UNIT)


async def test_clients_that_vanish_mid_request_have_their_backend_calls_cancelled(
    logs_dir: Path, record: dict[str, Any]
) -> None:
    clients_per_protocol = 10
    double = DoubleProcess(logs_dir, delay_ms=3000, payload_size=2048)
    double.start()
    proxy = ProxyProcess(logs_dir, grpc_addr=double.address)
    proxy.start()
    try:
        clients = []
        for index in range(2 * clients_per_protocol):
            is_v2 = index % 2 == 1
            client = RawClient.open(proxy.port, protocol=v2.SUBPROTOCOL if is_v2 else None)
            for n in range(MAX_INFLIGHT):
                if is_v2:
                    client.send(v2.encode_client(v2.InferRequest(n + 1, "demo", n)))
                else:
                    client.send(v1.encode_request(v1.FrameRequest("demo", n)))
            clients.append(client)
        expected = len(clients) * MAX_INFLIGHT
        await wait_for(
            lambda: double_stats(double.address)["active"].get("frame", 0) == expected,
            10 * TIME_UNIT,
            "every request at the backend",
        )
        for client in clients:
            client.vanish()
        cancelled_s = await wait_for(
            lambda: double_stats(double.address)["active"].get("frame", 0) == 0,
            5 * TIME_UNIT,
            "the backend calls cancelled",
        )
        stats = double_stats(double.address)
        inflight = proxy_metric(proxy.port, "lipsync_proxy_inflight_requests")
        # And the proxy serves the next client as usual.
        after = await V2Connection.open(proxy.ws_url)
        outcome = Outcome(frame_id=1, sent=time.monotonic())
        await asyncio.wait_for(after.infer(outcome), 10 * TIME_UNIT)
        await after.close()
    finally:
        proxy.stop()
        double.stop()
    record.update(
        clients=len(clients),
        requests_in_flight_when_they_vanished=expected,
        backend_calls_cancelled=stats["cancelled"].get("frame", 0),
        all_cancelled_within_s=cancelled_s,
        backend_calls_completed=stats["calls"].get("frame", 0) - stats["cancelled"].get("frame", 0),
        proxy_inflight_after=inflight,
    )

    assert stats["cancelled"].get("frame", 0) == expected
    assert cancelled_s < 1 * TIME_UNIT
    assert inflight == 0
    assert outcome.code == OK


async def test_a_flooding_client_is_held_to_its_rate_and_other_clients_do_not_notice(
    logs_dir: Path, record: dict[str, Any]
) -> None:
    per_connection, per_address, offered_s = 100, 150, 1.0
    double = DoubleProcess(logs_dir, delay_ms=2, payload_size=2048)
    double.start()
    limits = ("--rate-limit", str(per_connection), "--address-rate-limit", str(per_address))
    proxy = ProxyProcess(
        logs_dir, grpc_addr=double.address, extra_args=(*limits, "--client-address-header", "X-Real-IP")
    )
    proxy.start()
    flood, normal = Ledger(), Ledger()
    try:
        started = time.monotonic()
        await asyncio.gather(
            # Two connections of one address, each offering 4x its own rate for a second.
            open_loop(
                proxy.ws_url,
                2,
                4 * per_connection,
                offered_s,
                flood,
                drain_s=15,
                headers={"X-Real-IP": "203.0.113.1"},
            ),
            # Another client, on an address of its own, playing at 20 frames a second meanwhile.
            open_loop(proxy.ws_url, 1, 20, 6, normal, drain_s=5, headers={"X-Real-IP": "203.0.113.2"}),
        )
        throttled = proxy_metric(proxy.port, "lipsync_proxy_throttled_messages_total")
    finally:
        proxy.stop()
        double.stop()
    flood.finish_lost()
    normal.finish_lost()
    answered = sorted(o.done for o in flood.outcomes if o.done is not None)
    # The steady rate: past the first second, which each bucket may spend at once.
    steady = [t for t in answered if t >= started + 1.0]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    record.update(
        flood_offered_per_s=2 * 4 * per_connection,
        flood_requests=len(flood.outcomes),
        flood_codes=codes(flood.outcomes),
        flood_steady_rate_per_s=round(steady_rate, 1),
        address_rate_limit_per_s=per_address,
        connection_rate_limit_per_s=per_connection,
        messages_throttled=throttled,
        other_client=latency_summary(normal.outcomes),
        other_client_codes=codes(normal.outcomes),
        requests=len(flood.outcomes) + len(normal.outcomes),
        lost=codes(flood.outcomes + normal.outcomes).get("LOST", 0),
    )

    assert codes(flood.outcomes) == {OK: len(flood.outcomes)}
    assert steady_rate < per_address * 1.1
    assert steady_rate > per_address * 0.7
    assert codes(normal.outcomes) == {OK: len(normal.outcomes)}
    assert latency_summary(normal.outcomes)["p99_ms"] < 100 * TIME_UNIT
