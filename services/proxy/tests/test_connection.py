"""One WebSocket connection through the real proxy process: v1 binary, v2 binary, limits, cancellation."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_protocol import v2

from .doubles import double_stats, frame_id_of
from .processes import DoubleProcess, ProxyProcess, http_get, v1_request

pytestmark = pytest.mark.integration

PAYLOAD_SIZE = 98_432


async def recv_json(ws: ClientConnection) -> dict[str, object]:
    message = await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
    assert isinstance(message, str), f"expected a text reply, got {len(message)} bytes"
    reply: dict[str, object] = json.loads(message)
    return reply


async def recv_bytes(ws: ClientConnection) -> bytes:
    message = await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
    assert isinstance(message, bytes), f"expected a binary reply, got {message}"
    return message


async def test_a_v1_request_gets_the_full_frame_jpeg(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        await ws.send(v1_request("demo", 7))
        image = await recv_bytes(ws)
    assert image[:2] == b"\xff\xd8"
    assert image[-2:] == b"\xff\xd9"
    assert len(image) == PAYLOAD_SIZE
    assert frame_id_of(image) == 7


async def test_eight_pipelined_v1_requests_come_back_in_request_order(proxy: ProxyProcess) -> None:
    # Frame f takes f ms at the backend, so these complete in the reverse of the order they were sent.
    frames = [70, 60, 50, 40, 30, 20, 10, 0]
    async with connect(proxy.ws_url) as ws:
        for frame_id in frames:
            await ws.send(v1_request("demo", frame_id))
        replies = [frame_id_of(await recv_bytes(ws)) for _ in frames]
    assert replies == frames


async def test_a_connection_stops_reading_at_its_in_flight_cap(
    proxy: ProxyProcess, double: DoubleProcess
) -> None:
    frames = list(range(250, 270))
    seen: list[int] = []

    async def watch_backend() -> None:
        while True:
            seen.append((await double_stats(double.address))["active"].get("frame", 0))
            await asyncio.sleep(0.02)

    async with connect(proxy.ws_url) as ws:
        for frame_id in frames:
            await ws.send(v1_request("demo", frame_id))
        watcher = asyncio.create_task(watch_backend())
        replies = [frame_id_of(await recv_bytes(ws)) for _ in frames]
        watcher.cancel()
    assert max(seen) == 8
    assert replies == frames


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"", "at least 6 bytes"),
        (b"\x04demo\x01\x00\x00", "exactly 9 bytes"),
        (b"\x04demo\x01\x00\x00\x00\x00", "exactly 9 bytes"),
        (b"\x00\x01\x00\x00\x00", "at least 6 bytes"),
        (b"\x02\xff\xfe\x01\x00\x00\x00", "UTF-8"),
        (b"\x04demo\xff\xff\xff\xff", "frame_id"),
    ],
)
async def test_a_malformed_v1_request_gets_invalid_argument_and_the_connection_keeps_working(
    proxy: ProxyProcess, message: bytes, problem: str
) -> None:
    async with connect(proxy.ws_url) as ws:
        await ws.send(message)
        reply = await recv_json(ws)
        await ws.send(v1_request("demo", 1))
        assert frame_id_of(await recv_bytes(ws)) == 1
    assert reply["type"] == "error"
    assert reply["code"] == "INVALID_ARGUMENT"
    assert problem in str(reply["message"])


async def test_an_unknown_model_is_not_found_and_a_frame_outside_the_video_is_out_of_range(
    proxy: ProxyProcess,
) -> None:
    async with connect(proxy.ws_url) as ws:
        await ws.send(v1_request("sanders", 1))
        unknown = await recv_json(ws)
        await ws.send(v1_request("demo", 300))
        outside = await recv_json(ws)
    assert unknown == {
        "type": "error",
        "code": "NOT_FOUND",
        "message": "model 'sanders' not found; available models: demo",
        "model_name": "sanders",
        "frame_id": 1,
        "error": "model 'sanders' not found; available models: demo",
    }
    assert outside["code"] == "OUT_OF_RANGE"
    assert outside["model_name"] == "demo"
    assert outside["frame_id"] == 300


async def test_a_message_over_the_size_limit_closes_the_connection_with_1009(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        await ws.send(b"\x04demo" + bytes((1 << 20) + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_permessage_deflate_is_refused_even_when_the_client_offers_it(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def frames_at_backend(double: DoubleProcess, count: str, at_least: int) -> bool:
    """Whether the backend double's `count` of frames ("calls", "active", "cancelled") is `at_least`."""
    return (await double_stats(double.address))[count].get("frame", 0) >= at_least


async def test_a_client_that_disconnects_mid_request_leaves_no_call_running(
    proxy: ProxyProcess, double: DoubleProcess
) -> None:
    stats = await double_stats(double.address)
    started, before = stats["calls"].get("frame", 0), stats["cancelled"].get("frame", 0)
    async with connect(proxy.ws_url) as ws:
        # Frame 299 takes 299 ms at the backend.
        await ws.send(v1_request("demo", 299))
        await eventually(lambda: frames_at_backend(double, "calls", started + 1), "the call at the backend")
    await eventually(lambda: frames_at_backend(double, "cancelled", before + 1), "the call cancelled")
    assert (await double_stats(double.address))["active"].get("frame", 0) == 0


async def test_pipelined_frames_of_a_client_that_disconnects_leave_no_call_and_no_request_behind(
    proxy: ProxyProcess, double: DoubleProcess
) -> None:
    stats = await double_stats(double.address)
    started, before = stats["calls"].get("frame", 0), stats["cancelled"].get("frame", 0)
    async with connect(proxy.ws_url) as ws:
        # Frame 299 takes 299 ms at the backend; 1, 2 and 3 are answered at once and wait for their
        # turn behind it, as does the error reply of the empty (malformed) request.
        for message in (
            v1_request("demo", 299),
            v1_request("demo", 1),
            v1_request("demo", 2),
            b"",
            v1_request("demo", 3),
        ):
            await ws.send(message)
        # Disconnect while frame 299 runs: as soon as the backend has it.
        await eventually(lambda: frames_at_backend(double, "calls", started + 1), "frame 299 at the backend")

    async def settled() -> bool:
        stats = await double_stats(double.address)
        metrics = (await asyncio.to_thread(http_get, proxy.port, "/metrics")).body.decode()
        cancelled = stats["cancelled"].get("frame", 0) - before
        inflight = "lipsync_proxy_inflight_requests 0.0" in metrics
        return cancelled >= 1 and stats["active"].get("frame", 0) == 0 and inflight

    await eventually(settled, "the slow call cancelled and no request in flight")
    async with connect(proxy.ws_url) as ws:
        await ws.send(v1_request("demo", 4))
        assert frame_id_of(await recv_bytes(ws)) == 4, "the proxy serves on"


# --- v2 ---------------------------------------------------------------------------------------------


async def recv_v2(ws: ClientConnection) -> v2.ServerMessage:
    return v2.decode_server(await recv_bytes(ws))


async def test_v2_is_chosen_by_its_subprotocol(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        assert ws.subprotocol == v2.SUBPROTOCOL
    async with connect(proxy.ws_url) as ws:
        assert ws.subprotocol is None


async def test_v2_requests_complete_out_of_order_with_matching_ids(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.InferRequest(1, "demo", 150)))
        await ws.send(v2.encode_client(v2.InferRequest(2, "demo", 0)))
        first, second = await recv_v2(ws), await recv_v2(ws)
    assert isinstance(first, v2.FrameReply)
    assert isinstance(second, v2.FrameReply)
    assert (first.request_id, first.frame_id, frame_id_of(first.image)) == (2, 0, 0)
    assert (second.request_id, second.frame_id, frame_id_of(second.image)) == (1, 150, 150)
    assert second.width == 1280
    assert second.height == 720
    assert tuple(second.bounds) == (550, 200, 730, 380)
    assert second.timings.total_ms == pytest.approx(1.5)


async def test_a_failed_v2_request_gets_an_error_with_its_id(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.InferRequest(5, "nobody", 0)))
        await ws.send(v2.encode_client(v2.InferRequest(6, "demo", 1000)))
        replies = {reply.request_id: reply for reply in [await recv_v2(ws), await recv_v2(ws)]}
    assert replies[5] == v2.ErrorReply(5, "NOT_FOUND", "model 'nobody' not found; available models: demo")
    assert isinstance(replies[6], v2.ErrorReply)
    assert replies[6].code == "OUT_OF_RANGE"


async def test_a_malformed_v2_message_gets_an_error_and_the_connection_keeps_working(
    proxy: ProxyProcess,
) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(b"\x02\x01")
        truncated = await recv_v2(ws)
        await ws.send(b"\x02\x7f\x00\x00\x09\x00\x00\x00")
        unknown_type = await recv_v2(ws)
        await ws.send(v2.encode_client(v2.SessionAudio(12, b"\x00\x00")))
        no_session = await recv_v2(ws)
        # A CREDIT for no open session is ignored: it may have crossed a SESSION_END.
        await ws.send(v2.encode_client(v2.Credit(12, 1)))
        await ws.send(v2.encode_client(v2.InferRequest(13, "demo", 3)))
        frame = await recv_v2(ws)
    assert truncated == v2.ErrorReply(0, "INVALID_ARGUMENT", truncated.message)  # type: ignore[union-attr]
    assert isinstance(unknown_type, v2.ErrorReply)
    assert (unknown_type.request_id, unknown_type.code) == (9, "INVALID_ARGUMENT")
    assert no_session == v2.ErrorReply(12, "FAILED_PRECONDITION", "no session 12 is open")
    assert isinstance(frame, v2.FrameReply)
    assert frame.request_id == 13


async def test_a_v2_id_already_in_flight_is_refused(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.InferRequest(3, "demo", 100)))
        await ws.send(v2.encode_client(v2.InferRequest(3, "demo", 1)))
        duplicate, original = await recv_v2(ws), await recv_v2(ws)
    assert isinstance(duplicate, v2.ErrorReply)
    assert duplicate.code == "INVALID_ARGUMENT"
    assert isinstance(original, v2.FrameReply)
    assert original.frame_id == 100


async def test_a_v2_cancel_ends_the_request_and_its_call(proxy: ProxyProcess, double: DoubleProcess) -> None:
    stats = await double_stats(double.address)
    started, before = stats["calls"].get("frame", 0), stats["cancelled"].get("frame", 0)
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.InferRequest(4, "demo", 299)))
        await eventually(lambda: frames_at_backend(double, "calls", started + 1), "the call at the backend")
        await ws.send(v2.encode_client(v2.Cancel(4)))
        reply = await recv_v2(ws)
        # A CANCEL for an id no longer in flight is ignored: the next reply is the ping's.
        await ws.send(v2.encode_client(v2.Cancel(4)))
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        pong = await recv_json(ws)
    assert reply == v2.ErrorReply(4, "CANCELLED", "cancelled by the client")
    assert pong == {"type": "pong", "id": 1}
    assert (await double_stats(double.address))["cancelled"].get("frame", 0) == before + 1


def speech(frames: int) -> bytes:
    """PCM16 mono 16 kHz audio the double turns into `frames` frames (640 samples each)."""
    return bytes(frames * 640 * 2)


async def no_message_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def test_a_v2_session_streams_frames_and_honours_credits(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(21, "demo", start_frame_id=10, credits=2)))
        await ws.send(v2.encode_client(v2.SessionAudio(21, speech(10))))
        first = [await recv_v2(ws) for _ in range(2)]
        held_back = await no_message_within(ws, 0.2 * TIME_UNIT)
        await ws.send(v2.encode_client(v2.Credit(21, 3)))
        second = [await recv_v2(ws) for _ in range(3)]
        held_back_again = await no_message_within(ws, 0.2 * TIME_UNIT)
        await ws.send(v2.encode_client(v2.Credit(21, 100)))
        await ws.send(v2.encode_client(v2.SessionControl(21, v2.SessionAction.END)))
        rest = [await recv_v2(ws) for _ in range(7)]
    frames = [*first, *second, *rest[:-1]]
    assert held_back
    assert held_back_again
    assert all(isinstance(f, v2.SessionFrame) and f.request_id == 21 for f in frames)
    assert [f.sequence for f in frames] == list(range(11))  # type: ignore[union-attr]
    assert [f.frame_id for f in frames] == list(range(10, 21))  # type: ignore[union-attr]
    assert [f.end_of_utterance for f in frames] == [False] * 10 + [True]  # type: ignore[union-attr]
    assert rest[-1] == v2.SessionEnd(21, "OK", "")


async def test_a_v2_session_of_an_unknown_model_ends_with_not_found(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(30, "nobody", credits=1)))
        end = await recv_v2(ws)
    assert isinstance(end, v2.SessionEnd)
    assert (end.request_id, end.code) == (30, "NOT_FOUND")


async def test_a_cancelled_v2_session_ends_at_once_and_its_stream_with_it(
    proxy: ProxyProcess, double: DoubleProcess
) -> None:
    before = (await double_stats(double.address))["cancelled"].get("Speak", 0)
    async with connect(proxy.ws_url, subprotocols=[v2.SUBPROTOCOL]) as ws:
        await ws.send(v2.encode_client(v2.SessionStart(40, "demo", credits=0)))
        await ws.send(v2.encode_client(v2.SessionAudio(40, speech(3))))
        deadline = time.monotonic() + 10 * TIME_UNIT
        while (await double_stats(double.address))["active"].get("Speak", 0) == 0:
            assert time.monotonic() < deadline, "the Speak stream did not start"
            await asyncio.sleep(0.01)
        await ws.send(v2.encode_client(v2.Cancel(40)))
        end = await recv_v2(ws)
    assert end == v2.SessionEnd(40, "CANCELLED", "cancelled by the client")
    deadline = time.monotonic() + 10 * TIME_UNIT
    while (await double_stats(double.address))["cancelled"].get("Speak", 0) == before:
        assert time.monotonic() < deadline, "the Speak stream was not cancelled"
        await asyncio.sleep(0.01)
