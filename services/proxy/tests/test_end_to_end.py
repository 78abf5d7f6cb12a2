"""Browser-side protocols through the real proxy to the real lipsync-server and its demo avatar."""

from __future__ import annotations

import asyncio
import base64
import json

import cv2
import numpy as np
import pytest
from websockets.asyncio.client import connect

from lipsync_common.waiting import TIME_UNIT
from lipsync_protocol import v2

from .processes import ProxyProcess, v1_request

pytestmark = pytest.mark.integration


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image


async def test_a_v1_request_gets_a_full_1280x720_jpeg_frame(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(v1_request("demo", 50))
        reply = await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)
    assert isinstance(reply, bytes)
    assert reply[:2] == b"\xff\xd8"
    assert reply[-2:] == b"\xff\xd9"
    assert decode_jpeg(reply).shape == (720, 1280, 3)


async def test_json_metadata_and_errors_come_from_the_real_server(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "get_metadata", "model_name": "demo", "id": 1}))
        metadata = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))
        await ws.send(v1_request("demo", 100_000))
        outside = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))
    assert (metadata["width"], metadata["height"]) == (1280, 720)
    assert metadata["frame_count"] >= 250
    assert outside["code"] == "OUT_OF_RANGE"


async def test_json_get_audio_returns_the_packages_wav(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "get_audio", "model_name": "demo", "id": "a"}))
        audio = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))
        await ws.send(json.dumps({"type": "get_audio", "model_name": "nope", "id": "b"}))
        missing = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))
    wav = base64.b64decode(audio["audio_base64"])
    assert (audio["type"], audio["id"], audio["format"], audio["sample_rate"]) == (
        "audio",
        "a",
        "wav",
        16_000,
    )
    assert wav[:4] == b"RIFF"
    assert audio["size"] == len(wav)
    assert audio["duration_s"] == pytest.approx(12.0, abs=0.1)
    assert (missing["type"], missing["code"], missing["id"]) == ("error", "NOT_FOUND", "b")


async def test_a_v2_face_crop_comes_with_its_bounds(real_proxy: ProxyProcess) -> None:
    request = v2.InferRequest(1, "demo", 10, output_mode=v2.OutputMode.FACE_CROP)
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        await ws.send(v2.encode_client(request))
        reply = v2.decode_server(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT))  # type: ignore[arg-type]
    assert isinstance(reply, v2.FrameReply)
    assert reply.output_mode == v2.OutputMode.FACE_CROP
    x1, y1, x2, y2 = reply.bounds
    assert decode_jpeg(reply.image).shape[:2] == (y2 - y1, x2 - x1)


async def test_a_v2_session_speaks_through_the_real_server(real_proxy: ProxyProcess) -> None:
    tone = (np.sin(np.arange(16_000 // 2) * 2 * np.pi * 220 / 16_000) * 8000).astype("<i2").tobytes()
    async with connect(real_proxy.ws_url, subprotocols=[v2.SUBPROTOCOL], max_size=None) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(7, "demo", credits=1000)))
        await ws.send(v2.encode_client(v2.SessionAudio(7, tone)))
        await ws.send(v2.encode_client(v2.SessionControl(7, v2.SessionAction.END)))
        messages = []
        while not messages or not isinstance(messages[-1], v2.SessionEnd):
            data = await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)
            messages.append(v2.decode_server(data))  # type: ignore[arg-type]
    frames = messages[:-1]
    assert messages[-1] == v2.SessionEnd(7, "OK", "")
    assert len(frames) >= 10
    assert all(isinstance(f, v2.SessionFrame) for f in frames)
    assert decode_jpeg(frames[0].image).shape == (720, 1280, 3)  # type: ignore[union-attr]
