from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from doubles import PaintEngineDouble, tiny_package

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
