"""JSON text messages through the real proxy process: every type, ids echoed, errors mapped."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.waiting import TIME_UNIT
from lipsync_protocol import v2

from .doubles import frame_id_of
from .processes import ProxyProcess

pytestmark = pytest.mark.integration


async def ask(ws: ClientConnection, request: dict[str, object] | str) -> dict[str, object]:
    await ws.send(request if isinstance(request, str) else json.dumps(request))
    message = await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
    assert isinstance(message, str)
    reply: dict[str, object] = json.loads(message)
    return reply


async def test_an_inference_without_include_image_carries_the_seed_placeholder(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        reply = await ask(ws, {"type": "inference", "model_name": "demo", "frame_id": 50, "id": "r1"})
    assert reply["type"] == "inference"
    assert reply["id"] == "r1"
    assert reply["success"] is True
    assert reply["frame_id"] == 50
    assert reply["prediction_data"] == "use_binary_protocol_for_image_data"
    assert "image_base64" not in reply
    assert isinstance(reply["processing_time_ms"], float)
    assert reply["processing_time_ms"] > 0
    assert reply["size"] == 98_432


async def test_an_inference_with_include_image_carries_the_jpeg(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        reply = await ask(ws, {"model_name": "demo", "frame_id": 9, "include_image": True, "id": 3})
    image = base64.b64decode(str(reply["image_base64"]))
    assert reply["id"] == 3
    assert reply["success"] is True
    assert image[:2] == b"\xff\xd8"
    assert image[-2:] == b"\xff\xd9"
    assert frame_id_of(image) == 9
    assert "prediction_data" not in reply


async def test_a_failed_inference_says_why(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        unknown = await ask(ws, {"type": "inference", "model_name": "x", "frame_id": 1, "id": 1})
        outside = await ask(ws, {"type": "inference", "model_name": "demo", "frame_id": 999, "id": 2})
    assert unknown["success"] is False
    assert unknown["code"] == "NOT_FOUND"
    assert unknown["id"] == 1
    assert "available models: demo" in str(unknown["error"])
    assert outside["success"] is False
    assert outside["code"] == "OUT_OF_RANGE"
    assert outside["id"] == 2


async def test_list_models_names_the_backends_models(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        reply = await ask(ws, {"type": "list_models", "id": "models"})
    assert reply["type"] == "model_list"
    assert reply["id"] == "models"
    assert reply["models"] == ["demo"]
    assert reply["count"] == 1
    details = reply["details"]
    assert isinstance(details, list)
    assert details[0]["frame_count"] == 300
    assert details[0]["state"] == "ready"


async def test_get_metadata_describes_one_model(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        reply = await ask(ws, {"type": "get_metadata", "model_name": "demo", "id": 8})
        unknown = await ask(ws, {"type": "get_metadata", "model_name": "nobody", "id": 9})
    assert reply["type"] == "metadata"
    assert reply["id"] == 8
    assert (reply["frame_count"], reply["fps"], reply["width"], reply["height"]) == (300, 25.0, 1280, 720)
    assert reply["engine"] == "fake"
    assert unknown["type"] == "error"
    assert unknown["code"] == "NOT_FOUND"
    assert unknown["id"] == 9
    assert unknown["model_name"] == "nobody"


async def test_get_video_frame_returns_the_base_frame(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        reply = await ask(ws, {"type": "get_video_frame", "model_name": "demo", "frame_id": 12, "id": "f"})
        outside = await ask(ws, {"type": "get_video_frame", "model_name": "demo", "frame_id": 300})
    assert reply["type"] == "video_frame"
    assert reply["id"] == "f"
    assert reply["frame_id"] == 12
    assert frame_id_of(base64.b64decode(str(reply["image_base64"]))) == 12
    assert outside["type"] == "error"
    assert outside["code"] == "OUT_OF_RANGE"
    assert "id" not in outside


async def test_ping_is_answered_by_the_proxy(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        assert await ask(ws, {"type": "ping"}) == {"type": "pong"}
        assert await ask(ws, {"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}


@pytest.mark.parametrize(
    ("message", "echoed_id"),
    [
        ("{not json", None),
        ("[1, 2]", None),
        ('"text"', None),
        ('{"type": "dance", "id": 4}', 4),
        ('{"type": "inference", "model_name": 5, "frame_id": 1, "id": "a"}', "a"),
        ('{"type": "inference", "model_name": "demo", "frame_id": -1, "id": 6}', 6),
        ('{"type": "inference", "model_name": "demo", "frame_id": 1.5}', None),
        ('{"type": "get_metadata", "id": 7}', 7),
        ('{"type": "get_video_frame", "model_name": "demo", "id": 8}', 8),
        ('{"id": {"nested": true}}', None),
    ],
)
async def test_malformed_json_gets_invalid_argument_and_the_connection_keeps_working(
    proxy: ProxyProcess, message: str, echoed_id: object
) -> None:
    async with connect(proxy.ws_url) as ws:
        reply = await ask(ws, message)
        assert await ask(ws, {"type": "ping"}) == {"type": "pong"}
    assert reply["type"] == "error"
    assert reply["code"] == "INVALID_ARGUMENT"
    assert reply.get("id") == echoed_id
    assert isinstance(reply["message"], str)
    assert reply["message"]


async def test_json_works_on_a_v2_connection_too(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        reply = await ask(ws, {"type": "list_models", "id": 1})
    assert reply["models"] == ["demo"]
    assert reply["id"] == 1


async def test_json_and_binary_replies_keep_request_order_on_a_v1_connection(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        await ws.send(json.dumps({"model_name": "demo", "frame_id": 80, "id": "slow"}))
        await ws.send(json.dumps({"type": "ping", "id": "fast"}))
        first, second = await ws.recv(), await ws.recv()
    assert json.loads(first)["id"] == "slow"
    assert json.loads(second)["id"] == "fast"
