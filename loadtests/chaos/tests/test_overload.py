"""Three times the capacity offered, then half of it: the excess is refused at once, what is accepted is
served in time, and nothing is left over once the load drops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lipsync_common.waiting import TIME_UNIT
from loadtests.chaos.clients import open_loop
from loadtests.chaos.ledger import OK, Ledger, codes, latency_summary, rate
from loadtests.chaos.stack import DoubleProcess
from loadtests.processes import ProxyProcess

pytestmark = pytest.mark.integration

OVERLOADED = "RESOURCE_EXHAUSTED"


async def test_three_times_the_capacity_is_refused_quickly_and_the_accepted_requests_meet_their_deadline(
    logs_dir: Path, record: dict[str, Any]
) -> None:
    # Capacity: 24 requests in flight at the proxy, each taking 100 ms at the backend: 240 a second.
    cap, service_s, deadline_s = 24, 0.1, 5.0
    capacity = cap / service_s
    double = DoubleProcess(logs_dir, delay_ms=service_s * 1000, payload_size=2048)
    double.start()
    proxy = ProxyProcess(logs_dir, grpc_addr=double.address, extra_args=("--max-inflight-total", str(cap)))
    proxy.start()
    overload, after = Ledger(), Ledger()
    overload_s, after_s = 5.0, 3.0
    try:
        # 30 connections at 24 a second each: 720 a second, 3x the capacity.
        await open_loop(proxy.ws_url, 30, 3 * capacity / 30, overload_s, overload, drain_s=2 * deadline_s)
        # Then half the capacity: everything must be served again at once.
        await open_loop(proxy.ws_url, 12, capacity / 2 / 12, after_s, after, drain_s=2 * deadline_s)
    finally:
        proxy.stop()
        double.stop()
    overload.finish_lost()
    after.finish_lost()
    accepted = [o for o in overload.outcomes if o.code == OK]
    refused = [o for o in overload.outcomes if o.code == OVERLOADED]
    record.update(
        capacity_per_s=capacity,
        offered_per_s=3 * capacity,
        overload_codes=codes(overload.outcomes),
        served_per_s=rate(overload.outcomes, OK, overload_s),
        refused_per_s=rate(overload.outcomes, OVERLOADED, overload_s),
        refusal_latency=latency_summary(refused),
        accepted_latency=latency_summary(accepted),
        deadline_ms=deadline_s * 1000,
        after_codes=codes(after.outcomes),
        after_latency=latency_summary(after.outcomes),
        requests=len(overload.outcomes) + len(after.outcomes),
        lost=codes(overload.outcomes + after.outcomes).get("LOST", 0),
    )

    assert set(codes(overload.outcomes)) == {OK, OVERLOADED}
    assert rate(overload.outcomes, OK, overload_s) > 0.8 * capacity
    assert latency_summary(refused)["p99_ms"] < 100 * TIME_UNIT
    assert latency_summary(accepted)["max_ms"] < deadline_s * 1000
    assert latency_summary(accepted)["p99_ms"] < 4 * service_s * 1000 * TIME_UNIT
    assert codes(after.outcomes) == {OK: len(after.outcomes)}
