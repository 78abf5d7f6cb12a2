from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from doubles import PaintEngineDouble, tiny_package
from server_process import TIME_UNIT

from lipsync_server import server as server_module
from lipsync_server.registry import ReadyModel
from lipsync_server.render import RenderRequest
from lipsync_server.server import Deps, create_server
from lipsync_server.settings import Settings


async def test_the_queued_frames_gauge_reads_the_frames_waiting_to_be_rendered(tmp_path: Path) -> None:
    package = tiny_package()
    deps = Deps(
        load_package=lambda path, name: package,
        engines={"paint": PaintEngineDouble()},
        demo_package=lambda cache: cache,
    )
    server = create_server(replace(Settings(), host="127.0.0.1", port=0, cache_dir=tmp_path), deps)
    model = ReadyModel(package, PaintEngineDouble())

    def queued() -> float | None:
        return server.metrics.registry.get_sample_value("lipsync_server_queued_frames")

    try:
        rendering = asyncio.create_task(
            server.runner.render(model, [RenderRequest(frame_id=i) for i in range(3)])
        )
        await asyncio.sleep(0)  # the task queues its frames; results need more turns of the loop
        assert queued() == 3
        await rendering
        assert queued() == 0
    finally:
        server.runner.shutdown()


async def test_a_client_connection_is_aged_out_so_that_clients_look_the_servers_name_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "MAX_CONNECTION_AGE_S", 1)
    deps = Deps(
        load_package=lambda path, name: tiny_package(),
        engines={"paint": PaintEngineDouble()},
        demo_package=lambda cache: cache,
    )
    settings = replace(Settings(), host="127.0.0.1", port=0, metrics_port=0, cache_dir=tmp_path)
    server = create_server(settings, deps)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await channel.channel_ready()
            # gRPC allows the age ±10% jitter; GOAWAY then leaves the channel READY no more.
            await asyncio.wait_for(
                channel.wait_for_state_change(grpc.ChannelConnectivity.READY), 5 * TIME_UNIT
            )
            assert channel.get_state() != grpc.ChannelConnectivity.READY
    finally:
        await server.stop(0)
        server.runner.shutdown()
