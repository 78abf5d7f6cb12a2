"""The seed's JSON messages and failure log lines on the proxy in front of the fake backend."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from lipsync_common.waiting import TIME_UNIT, wait_until
from lipsync_protocol import v2

from .processes import ProxyProcess

pytestmark = pytest.mark.integration


async def test_a_v2_connection_acknowledges_test_binary_but_cannot_switch_its_binary_messages(
    proxy: ProxyProcess,
) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "test_binary", "id": 1}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT))
        await ws.send(json.dumps({"type": "switch_to_binary", "id": 2}))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT))
        await ws.send(json.dumps({"type": "get_video_frame", "model_name": "demo", "frame_id": 1}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT))
    assert ack == {"type": "protocol_ack", "id": 1, "message": "Binary protocol supported"}
    assert (refused["type"], refused["id"], refused["code"]) == ("error", 2, "FAILED_PRECONDITION")
    assert refused["error"] == refused["message"]
    assert frame["type"] == "video_frame"


async def test_every_failed_request_leaves_one_log_line_naming_its_client(proxy: ProxyProcess) -> None:
    marker = "no-such-model-for-the-log-line"
    async with connect(proxy.ws_url) as ws:
        await ws.send("{not json")
        invalid = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT))
        await ws.send(json.dumps({"type": "get_metadata", "model_name": marker}))
        missing = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT))
    assert (invalid["code"], invalid["error"]) == ("INVALID_ARGUMENT", "message is not valid JSON")
    assert missing["code"] == "NOT_FOUND"
    assert missing["error"] == missing["message"]

    invalid_line = "invalid failed: INVALID_ARGUMENT message is not valid JSON (model=None frame=None"

    def logged() -> bool:
        text = proxy.output()
        return f"get_metadata failed: NOT_FOUND model '{marker}'" in text and invalid_line in text

    await asyncio.to_thread(wait_until, logged, 10 * TIME_UNIT, "the failures' log lines")
    lines = [line for line in proxy.output().splitlines() if marker in line]
    assert len(lines) == 1
    assert f"(model={marker} frame=None client=127.0.0.1)" in lines[0]
    assert "WARNING" in lines[0]
