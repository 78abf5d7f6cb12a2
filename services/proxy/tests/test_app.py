"""The app built in-process by `create_app` on port 0, in front of an in-process double."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_protocol import v2
from lipsync_proxy import backends
from lipsync_proxy.app import Dependencies, ProxyApp, create_app
from lipsync_proxy.errors import StartupError
from lipsync_proxy.settings import Settings

from .doubles import DoubleConfig, RunningDouble, frame_id_of, start_double
from .processes import v1_request


@dataclass
class Stack:
    app: ProxyApp
    double: RunningDouble

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.app.port}/ws"


async def start_stack(**settings: object) -> Stack:
    double = await start_double(0, DoubleConfig(delay_s_per_frame=0.001, payload_size=1000))
    defaults: dict[str, object] = {
        "ws_port": 0,
        "host": "127.0.0.1",
        "static_dir": None,
        "grace_period_s": 5.0,
    }
    app = await create_app(Settings(grpc_addr=double.address, **(defaults | settings)))  # type: ignore[arg-type]
    return Stack(app, double)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack(max_inflight=2, max_inflight_total=3)
    yield running
    if not running.app.state.draining:
        await running.app.shutdown()
    await running.double.server.stop(None)


async def test_the_app_binds_a_free_port_when_asked_for_port_0(stack: Stack) -> None:
    assert stack.app.port > 0
    async with connect(stack.url) as ws:
        await ws.send(v1_request("demo", 2))
        assert frame_id_of(await ws.recv()) == 2  # type: ignore[arg-type]


async def test_beyond_the_global_cap_requests_get_resource_exhausted(stack: Stack) -> None:
    async with connect(stack.url) as first, connect(stack.url) as second, connect(stack.url) as third:
        await first.send(v1_request("demo", 200))
        await first.send(v1_request("demo", 201))
        await second.send(v1_request("demo", 202))
        await eventually(lambda: stack.app.state.inflight == 3, "the three requests admitted")
        await third.send(v1_request("demo", 3))
        await third.send(json.dumps({"type": "inference", "model_name": "demo", "frame_id": 4, "id": 1}))
        refused = json.loads(await third.recv())
        refused_json = json.loads(await third.recv())
        served = [await first.recv(), await first.recv(), await second.recv()]
    assert refused["code"] == "RESOURCE_EXHAUSTED"
    assert refused["frame_id"] == 3
    assert "limit of 3 requests" in refused["message"]
    assert refused_json["success"] is False
    assert refused_json["code"] == "RESOURCE_EXHAUSTED"
    assert [frame_id_of(frame) for frame in served] == [200, 201, 202]  # type: ignore[arg-type]


async def test_shutdown_lets_a_session_finish_its_speech_then_closes_with_1001(stack: Stack) -> None:
    async with connect(stack.url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(1, "demo", credits=100)))
        await ws.send(v2.encode_client(v2.SessionAudio(1, bytes(2 * 640 * 2))))
        first = v2.decode_server(await ws.recv())  # type: ignore[arg-type]
        shutdown = asyncio.create_task(stack.app.shutdown())
        rest = [v2.decode_server(await ws.recv()) for _ in range(3)]  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosedOK) as closed:
            await ws.recv()
        await asyncio.wait_for(shutdown, 5 * TIME_UNIT)
    assert isinstance(first, v2.SessionFrame)
    assert first.sequence == 0
    assert [type(m).__name__ for m in rest] == ["SessionFrame", "SessionFrame", "SessionEnd"]
    assert rest[1].end_of_utterance  # type: ignore[union-attr]
    assert rest[2] == v2.SessionEnd(1, "OK", "")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


async def test_new_connections_are_refused_while_shutting_down(stack: Stack) -> None:
    async with connect(stack.url) as ws:
        await ws.send(v1_request("demo", 150))
        await eventually(lambda: stack.app.state.inflight == 1, "the request admitted")
        shutdown = asyncio.create_task(stack.app.shutdown())
        await eventually(lambda: stack.app.state.draining, "the proxy draining")
        with pytest.raises(ConnectionRefusedError):
            async with connect(stack.url, open_timeout=2 * TIME_UNIT):
                pass
        assert frame_id_of(await ws.recv()) == 150  # type: ignore[arg-type]
        await asyncio.wait_for(shutdown, 5 * TIME_UNIT)


async def test_names_in_a_backend_list_are_resolved_once_at_start() -> None:
    double = await start_double(0, DoubleConfig(payload_size=1000))
    asked: list[str] = []

    async def resolve(host: str) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    settings = Settings(
        ws_port=0, host="127.0.0.1", static_dir=None, grpc_addr=f"backend-a:{double.port},127.0.0.1:1"
    )
    app = await create_app(settings, Dependencies(resolve=resolve))
    try:
        async with connect(f"ws://127.0.0.1:{app.port}/ws") as ws:
            await ws.send(v1_request("demo", 5))
            assert frame_id_of(await ws.recv()) == 5  # type: ignore[arg-type]
        assert asked == ["backend-a"]
        assert [b.name for b in app.monitor.pool.backends] == [
            f"backend-a:{double.port} (127.0.0.1)",
            "127.0.0.1:1",
        ]
    finally:
        await app.shutdown()
        await double.server.stop(None)


async def test_health_lists_each_address_a_backend_name_resolves_to_and_follows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "RESOLVE_INTERVAL_S", 0.05)
    first = await start_double(0, DoubleConfig(payload_size=1000))
    second = await start_double(first.port, DoubleConfig(payload_size=1000), host="127.0.0.2")
    names = {"replicas": ["127.0.0.1", "127.0.0.2"]}

    async def resolve(host: str) -> list[str]:
        if host not in names:
            raise OSError(f"{host}: no such name")
        return names[host]

    settings = Settings(
        ws_port=0, host="127.0.0.1", static_dir=None, grpc_addr=f"dns:///replicas:{first.port}"
    )
    app = await create_app(settings, Dependencies(resolve=resolve))

    def statuses() -> dict[str, str]:
        return {backend["name"]: backend["status"] for backend in app.monitor.snapshot()}

    both = {f"replicas:{first.port} (127.0.0.1)": "SERVING", f"replicas:{first.port} (127.0.0.2)": "SERVING"}
    try:
        await eventually(lambda: statuses() == both, "both replicas SERVING", within_s=5.0)
        assert app.monitor.snapshot()[1]["target"] == f"127.0.0.2:{first.port}"

        # A lookup that fails keeps the backends; an address the name no longer gives is forgotten.
        del names["replicas"]
        await asyncio.sleep(0.2)
        assert statuses() == both
        names["replicas"] = ["127.0.0.1"]
        only_first = {f"replicas:{first.port} (127.0.0.1)": "SERVING"}
        await eventually(lambda: statuses() == only_first, "the second replica gone", within_s=5.0)
        names["replicas"] = ["127.0.0.1", "127.0.0.2"]
        await eventually(lambda: statuses() == both, "the second replica back", within_s=5.0)
    finally:
        await app.shutdown()
        await first.server.stop(None)
        await second.server.stop(None)


async def test_a_port_in_use_is_a_startup_error() -> None:
    stack = await start_stack()
    try:
        with pytest.raises(StartupError, match="address already in use"):
            await create_app(Settings(ws_port=stack.app.port, host="127.0.0.1", static_dir=None))
    finally:
        await stack.app.shutdown()
        await stack.double.server.stop(None)


async def test_a_peer_that_stops_answering_pings_is_dropped() -> None:
    stack = await start_stack(ping_interval_s=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.app.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        # Never answer a ping: the proxy pings after 0.2 s and gives up 0.2 s later.
        started = time.monotonic()
        while await asyncio.wait_for(reader.read(1024), 5 * TIME_UNIT):
            pass
        assert time.monotonic() - started < 3 * TIME_UNIT
        writer.close()
    finally:
        await stack.app.shutdown()
        await stack.double.server.stop(None)
