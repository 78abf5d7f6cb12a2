"""The latency the proxy adds at one connection, measured request by request against direct unary.

One client takes turns: a direct unary `Infer` on the backend, then the same frame as a v1 request
through the proxy, `pairs` times after `warmup` pairs. Whole runs of each client one after the other
(the side-by-side tables) also measure how the shared machine's speed drifted between the runs, which
moves direct unary's own p50 by more than the tenth of a millisecond the proxy adds; taking turns,
both clients see the machine at the same moments.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import grpc

from loadtests.direct import CHANNEL_OPTIONS, Requests, UnaryLane
from loadtests.stats import LatencySummary
from loadtests.wsload import V1Lane


async def taking_turns(
    backend_address: str, ws_url: str, pairs: int, warmup: int, model: str = "demo", frames: int = 300
) -> dict[str, Any]:
    """The latency summaries of direct unary and of the proxy (milliseconds), and the pairs taken."""
    direct_ms: list[float] = []
    proxy_ms: list[float] = []
    async with grpc.aio.insecure_channel(backend_address, options=CHANNEL_OPTIONS) as channel:
        direct = UnaryLane(channel, Requests(model))
        proxy = await V1Lane.open(ws_url, model)
        try:
            for turn in range(warmup + pairs):
                frame_id = turn % frames
                started = time.perf_counter()
                await direct.request(frame_id)
                between = time.perf_counter()
                await proxy.request(frame_id)
                ended = time.perf_counter()
                if turn >= warmup:
                    direct_ms.append((between - started) * 1000.0)
                    proxy_ms.append((ended - between) * 1000.0)
        finally:
            await proxy.close()
    return {
        "pairs": pairs,
        "direct unary": asdict(LatencySummary.of(direct_ms)),
        "proxy v1": asdict(LatencySummary.of(proxy_ms)),
    }
