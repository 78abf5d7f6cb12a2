from __future__ import annotations

from loadtests.processes import BackendProcess, ProxyProcess
from loadtests.turns import taking_turns


async def test_taking_turns_times_every_pair_of_a_direct_and_a_proxied_request(
    stack: tuple[BackendProcess, ProxyProcess],
) -> None:
    backend, proxy = stack
    turns = await taking_turns(backend.address, proxy.ws_url, pairs=30, warmup=5)
    assert turns["pairs"] == 30
    for client in ("direct unary", "proxy v1"):
        latency = turns[client]
        assert latency["count"] == 30, client
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"], client
