"""`/metrics` of the real proxy and of the real server behind it, after known traffic through the proxy:
every metric docs/observability.md lists is there, with the values the traffic implies."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.waiting import TIME_UNIT, wait_until
from lipsync_protocol import v2

from .processes import ProxyProcess, ServerProcess, http_get, v1_request

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered_proxy(real_server: ServerProcess, logs_dir: Path) -> Iterator[ProxyProcess]:
    """A proxy of its own, so that its counters count this module's traffic only. It sends every frame as
    an `Infer` call (no batches), so that the server's per-method counts are exact."""
    process = ProxyProcess(logs_dir, grpc_addr=real_server.address, args=["--max-batch", "1"])
    process.start().wait_ready(20 * TIME_UNIT)
    try:
        wait_until(lambda: process.health().status == 200, 10 * TIME_UNIT, "the proxy's /health 200")
        yield process
    finally:
        process.stop()


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


SPEAK_CALLS = ("lipsync_server_requests_total", frozenset({"method": "Speak", "code": "OK"}.items()))


def scrape_proxy(proxy: ProxyProcess) -> Samples:
    reply = http_get(proxy.port, "/metrics")
    assert reply.status == 200
    return parse(reply.body.decode())


def scrape_server(server: ServerProcess) -> Samples:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5 * TIME_UNIT) as reply:
        return parse(reply.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)


async def traffic(proxy: ProxyProcess) -> int:
    """Known requests of every kind through the proxy; the number of frames the session delivered."""
    async with connect(proxy.ws_url, max_size=None) as ws:
        for frame_id in (1, 2, 3, 100_000):
            await ws.send(v1_request("demo", frame_id))
            await recv(ws)
        await ws.send(b"\x05demo")  # too short: INVALID_ARGUMENT
        await recv(ws)
        for message in (
            {"model_name": "demo", "frame_id": 4, "output_mode": "face_crop"},
            {"type": "get_metadata", "model_name": "demo"},
            {"type": "ping"},
        ):
            await ws.send(json.dumps(message))
            await recv(ws)
    tone = (np.sin(np.arange(4800) * 2 * np.pi * 220 / 16_000) * 8000).astype("<i2").tobytes()
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        for request_id in (1, 2):
            await ws.send(v2.encode_client(v2.InferRequest(request_id, "demo", 10 + request_id)))
            await recv(ws)
        await ws.send(v2.encode_client(v2.SessionStart(3, "demo", credits=1000)))
        await ws.send(v2.encode_client(v2.SessionAudio(3, tone)))
        await ws.send(v2.encode_client(v2.SessionControl(3, v2.SessionAction.END)))
        frames = 0
        while not isinstance(message := v2.decode_server(await recv(ws)), v2.SessionEnd):  # type: ignore[arg-type]
            frames += isinstance(message, v2.SessionFrame)
    return frames


def test_after_traffic_both_services_metrics_have_the_values_it_implies(
    metered_proxy: ProxyProcess, real_server: ServerProcess
) -> None:
    server_before = scrape_server(real_server)
    frames = asyncio.run(traffic(metered_proxy))
    assert frames >= 3
    # The connections are closed; the proxy notices within a moment.
    wait_until(
        lambda: value(scrape_proxy(metered_proxy), "lipsync_proxy_open_connections", protocol="v2") == 0,
        5 * TIME_UNIT,
        "the connections closed",
    )
    # The server counts a call once it has answered it: wait until the last one, the Speak call, is.
    wait_until(
        lambda: scrape_server(real_server).get(SPEAK_CALLS, 0) > server_before.get(SPEAK_CALLS, 0),
        5 * TIME_UNIT,
        "the server counting the Speak call",
    )
    proxy = scrape_proxy(metered_proxy)
    server = scrape_server(real_server)

    def proxy_requests(kind: str, code: str) -> float:
        return value(proxy, "lipsync_proxy_requests_total", type=kind, code=code)

    assert value(proxy, "lipsync_proxy_connections_total", protocol="v1") == 1
    assert value(proxy, "lipsync_proxy_connections_total", protocol="v2") == 1
    assert value(proxy, "lipsync_proxy_open_connections", protocol="v1") == 0
    assert proxy_requests("v1_frame", "OK") == 3
    assert proxy_requests("v1_frame", "OUT_OF_RANGE") == 1
    assert proxy_requests("v1_frame", "INVALID_ARGUMENT") == 1
    assert proxy_requests("inference", "OK") == proxy_requests("get_metadata", "OK") == 1
    assert proxy_requests("ping", "OK") == 1
    assert proxy_requests("v2_infer", "OK") == 2
    assert proxy_requests("v2_session", "OK") == 1
    assert value(proxy, "lipsync_proxy_request_duration_seconds_count", type="v1_frame") == 5
    assert value(proxy, "lipsync_proxy_request_duration_seconds_sum", type="v1_frame") > 0
    assert value(proxy, "lipsync_proxy_grpc_duration_seconds_count", method="Infer") == 3 + 1 + 1 + 2
    assert value(proxy, "lipsync_proxy_backend_frames_total", method="Infer") == 3 + 1 + 1 + 2
    assert value(proxy, "lipsync_proxy_grpc_duration_seconds_count", method="GetModelMetadata") == 1
    assert value(proxy, "lipsync_proxy_inflight_requests") == 0
    assert value(proxy, "lipsync_proxy_sessions") == 0
    assert value(proxy, "lipsync_proxy_backend_serving", backend=real_server.address) == 1
    assert value(proxy, "lipsync_proxy_session_frames_requested_total") == frames
    assert value(proxy, "lipsync_proxy_session_frames_delivered_total") == frames
    assert value(proxy, "lipsync_proxy_session_delivered_ratio_count") == 1
    assert value(proxy, "lipsync_proxy_session_delivered_ratio_bucket", le="0.99") == 0

    def added(name: str, **labels: str) -> float:
        return value(server, name, **labels) - value(server_before, name, **labels)

    assert added("lipsync_server_requests_total", method="Infer", code="OK") == 3 + 1 + 2
    assert added("lipsync_server_requests_total", method="Infer", code="OUT_OF_RANGE") == 1
    assert added("lipsync_server_requests_total", method="GetModelMetadata", code="OK") == 1
    assert added("lipsync_server_requests_total", method="Speak", code="OK") == 1
    assert added("lipsync_server_request_duration_seconds_count", method="Infer") == 7
    assert added("lipsync_server_frames_total", model="demo", output_mode="full_frame") == 3 + 2 + frames
    assert added("lipsync_server_frames_total", model="demo", output_mode="face_crop") == 1
    for stage in ("audio_features", "inference", "composite", "encode"):
        assert added("lipsync_server_stage_duration_seconds_count", stage=stage) == 6 + frames
    assert added("lipsync_server_batch_size_count") >= 1
    assert value(server, "lipsync_server_inflight_requests") == 0
    assert value(server, "lipsync_server_queued_frames") == 0
    assert value(server, "lipsync_server_models", state="ready") == 1
