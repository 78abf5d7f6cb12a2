"""The seed code's binary layout, spoken byte by byte through the real proxy to the real lipsync-server
and its demo avatar: what the seed's `realtime-lipsync-binary.html` and scripts send and read."""

from __future__ import annotations

import asyncio
import json
import struct

import cv2
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from lipsync_common.waiting import TIME_UNIT, wait_until

from .processes import ProxyProcess, v1_request

pytestmark = pytest.mark.integration

#: 640 ms of 24 kHz PCM16 around a frame: what the seed's page sends with each request.
WINDOW_24K = 16 * 1920


def code_request(model_name: str, frame_id: int, audio: bytes = bytes(WINDOW_24K)) -> bytes:
    """The request as the seed's page builds it, field by field."""
    name = model_name.encode()
    return (
        struct.pack("<I", len(name))
        + name
        + struct.pack("<I", frame_id)
        + struct.pack("<I", len(audio))
        + audio
    )


def loud_window() -> bytes:
    """Silence, then a loud 500 Hz square wave in the frame's own chunk (the ninth of 16), at 24 kHz."""
    loud = (20_000 * np.tile([1] * 24 + [-1] * 24, 20)).astype("<i2").tobytes()
    return bytes(8 * 1920) + loud + bytes(7 * 1920)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)


def read_crop_reply(data: bytes) -> tuple[int, int, bytes, tuple[float, ...]]:
    """The seed page's reading of a reply: [u8 1][u32 frame][u32 ms][u32 image_len][image][u32 n][f32...]."""
    assert data[0] == 1
    frame_id, processing_ms, image_len = struct.unpack_from("<III", data, 1)
    image = data[13 : 13 + image_len]
    (bounds_bytes,) = struct.unpack_from("<I", data, 13 + image_len)
    bounds = struct.unpack_from(f"<{bounds_bytes // 4}f", data, 17 + image_len)
    assert len(data) == 17 + image_len + bounds_bytes
    return frame_id, processing_ms, image, bounds


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image


async def test_a_code_layout_request_gets_the_face_crop_and_its_bounds(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(code_request("demo", 50))
        reply = await recv(ws)
    assert isinstance(reply, bytes)
    frame_id, processing_ms, image, bounds = read_crop_reply(reply)
    assert frame_id == 50
    assert 0 < processing_ms < 10_000 * TIME_UNIT
    assert image[:2] == b"\xff\xd8"
    x1, y1, x2, y2 = bounds
    assert 0 <= x1 < x2 <= 1280
    assert 0 <= y1 < y2 <= 720
    assert decode_jpeg(image).shape == (int(y2 - y1), int(x2 - x1), 3)


async def test_both_layouts_on_one_connection_are_answered_in_order_each_in_its_own(
    real_proxy: ProxyProcess,
) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        for message in (v1_request("demo", 1), code_request("demo", 2), v1_request("demo", 3)):
            await ws.send(message)
        full, crop, last = [await recv(ws) for _ in range(3)]
    assert isinstance(full, bytes)
    assert isinstance(crop, bytes)
    assert isinstance(last, bytes)
    assert decode_jpeg(full).shape == (720, 1280, 3)
    assert decode_jpeg(last).shape == (720, 1280, 3)
    assert read_crop_reply(crop)[0] == 2


async def test_the_24_khz_window_the_seeds_page_sends_drives_the_mouth(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(code_request("demo", 40, bytes(WINDOW_24K)))
        silent = read_crop_reply(await recv(ws))[2]  # type: ignore[arg-type]
        await ws.send(code_request("demo", 40, loud_window()))
        loud = read_crop_reply(await recv(ws))[2]  # type: ignore[arg-type]
    difference = np.abs(decode_jpeg(silent).astype(int) - decode_jpeg(loud).astype(int)).mean()
    assert difference > 2.0  # mean over the crop, of 255: the mouth opened


async def test_audio_of_an_unknown_format_is_ignored_as_the_seed_ignored_it(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(code_request("demo", 60, b""))
        own = read_crop_reply(await recv(ws))[2]  # type: ignore[arg-type]
        await ws.send(code_request("demo", 60, loud_window()[:16_384]))
        odd = read_crop_reply(await recv(ws))[2]  # type: ignore[arg-type]
    assert odd == own


async def test_switch_to_binary_is_acknowledged_and_turns_video_frames_binary(
    real_proxy: ProxyProcess,
) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "get_video_frame", "model_name": "demo", "frame_id": 4}))
        before = await recv(ws)
        await ws.send(json.dumps({"type": "test_binary"}))
        probe = await recv(ws)
        await ws.send(json.dumps({"type": "switch_to_binary"}))
        ack = await recv(ws)
        request = {"type": "get_video_frame", "model_name": "demo", "frame_id": 4, "video_type": "full_body"}
        await ws.send(json.dumps(request))
        after = await recv(ws)
    assert json.loads(before)["type"] == "video_frame"
    assert json.loads(probe) == {"type": "protocol_ack", "message": "Binary protocol supported"}
    assert json.loads(ack) == {"type": "protocol_ack", "message": "Binary protocol supported"}
    assert isinstance(after, bytes)
    assert after[0] == 2
    assert struct.unpack_from("<IB", after, 1) == (4, 9)
    assert after[6:15] == b"full_body"
    (data_len,) = struct.unpack_from("<I", after, 15)
    assert len(after) == 19 + data_len
    assert decode_jpeg(after[19:]).shape == (720, 1280, 3)


async def test_metadata_carries_the_fields_the_seeds_page_checks(real_proxy: ProxyProcess) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "get_metadata", "model_name": "demo"}))
        metadata = json.loads(await recv(ws))
    assert metadata["success"] is True
    assert metadata["available_videos"]
    assert metadata["audio_path"].endswith(".wav")
    assert "/" not in metadata["audio_path"]
    x1, y1, x2, y2 = metadata["bounds"]
    assert 0 <= x1 < x2 <= 1280
    assert 0 <= y1 < y2 <= 720


async def test_a_failed_code_layout_request_is_a_json_error_with_the_seeds_key_and_a_log_line(
    real_proxy: ProxyProcess,
) -> None:
    async with connect(real_proxy.ws_url, max_size=None) as ws:
        await ws.send(code_request("nobody", 7))
        reply = await recv(ws)
    assert isinstance(reply, str)
    error = json.loads(reply)
    assert (error["type"], error["code"], error["model_name"], error["frame_id"]) == (
        "error",
        "NOT_FOUND",
        "nobody",
        7,
    )
    assert error["error"] == error["message"]
    wait_until(
        lambda: (
            "v1_frame failed: NOT_FOUND" in real_proxy.output()
            and "(model=nobody frame=7 client=127.0.0.1)" in real_proxy.output()
        ),
        10 * TIME_UNIT,
        "the failure's log line",
    )
