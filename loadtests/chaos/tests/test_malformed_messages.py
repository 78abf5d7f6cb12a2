"""Malformed messages of every kind, each followed by a valid request, through the real proxy to the real
server: every malformed one gets its error reply, every valid one its frame, on the same connection."""

from __future__ import annotations

import asyncio
import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from lipsync_common.waiting import TIME_UNIT
from lipsync_protocol import v1, v2
from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc
from loadtests.chaos.clients import is_jpeg
from loadtests.processes import ProxyProcess, ServerProcess

pytestmark = pytest.mark.integration

MODEL = "demo"
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
BAD = "INVALID_ARGUMENT"


def _name(text: str = MODEL) -> bytes:
    return bytes((len(text),)) + text.encode()


def _header(kind: int, request_id: int = 7, flags: int = 0, version: int = 2) -> bytes:
    return v2.HEADER.pack(version, kind, flags, request_id)


def _infer(
    *,
    frame_id: int = 1,
    mode: int = 1,
    quality: int = 0,
    name: bytes = MODEL.encode(),
    tp: int = 0,
    tail: bytes = b"",
) -> bytes:
    """An INFER with these fields; `tp` is the traceparent length, `tail` what follows the name."""
    fixed = struct.pack("<IBBBBi", frame_id, mode, quality, len(name), tp, -1)
    return _header(v2.INFER) + fixed + name + tail


#: Malformed v1 binary messages: (what is wrong, bytes, the error code the reply must carry).
V1_BINARY: list[tuple[str, bytes, str]] = [
    ("empty", b"", BAD),
    ("shorter than a request", b"\x04demo", BAD),
    ("name longer than the message", b"\x09demo" + struct.pack("<I", 1), BAD),
    ("bytes after the frame id", _name() + struct.pack("<I", 1) + b"\x00", BAD),
    ("empty name", b"\x00" + struct.pack("<I", 1), BAD),
    ("name not UTF-8", b"\x03\xff\xfe\xfd" + struct.pack("<I", 1), BAD),
    ("frame id beyond int32", _name() + struct.pack("<I", 2**31), BAD),
    ("unknown model", _name("nobody") + struct.pack("<I", 1), "NOT_FOUND"),
    ("frame outside the video", _name() + struct.pack("<I", 1_000_000), "OUT_OF_RANGE"),
]
#: Malformed JSON text messages, on either protocol.
JSON: list[tuple[str, str, str]] = [
    ("not JSON", "{oops", BAD),
    ("not an object", "[1, 2]", BAD),
    ("unknown type", '{"type":"reboot"}', BAD),
    ("name of the wrong type", '{"model_name":5,"frame_id":1}', BAD),
    ("float frame id", '{"model_name":"demo","frame_id":1.5}', BAD),
    ("bool frame id", '{"model_name":"demo","frame_id":true}', BAD),
    ("negative frame id", '{"model_name":"demo","frame_id":-1}', BAD),
    ("empty name", '{"model_name":"","frame_id":1}', BAD),
    ("unknown output mode", '{"model_name":"demo","frame_id":1,"output_mode":"3d"}', BAD),
    ("bad traceparent", '{"model_name":"demo","frame_id":1,"traceparent":"00-0-0-01"}', BAD),
    ("lone surrogate id", '{"type":"ping","id":"\\ud800"}', BAD),
    ("nested 100000 deep", "[" * 100_000, BAD),
    ("metadata without a name", '{"type":"get_metadata"}', BAD),
    ("unknown model", '{"type":"get_metadata","model_name":"nobody"}', "NOT_FOUND"),
]
#: Malformed v2 binary messages.
V2_BINARY: list[tuple[str, bytes, str]] = [
    ("empty", b"", BAD),
    ("half a header", b"\x02\x01\x00", BAD),
    ("another version", _header(v2.INFER, version=1) + b"\x00" * 12, BAD),
    ("unknown type", _header(0x7E), BAD),
    ("a server type", _header(v2.FRAME), BAD),
    ("flags set", _header(v2.CANCEL, flags=1), BAD),
    ("request id 0", _header(v2.CANCEL, request_id=0), BAD),
    ("truncated INFER", _header(v2.INFER) + b"\x01\x00", BAD),
    ("unknown output mode", _infer(mode=9), BAD),
    ("quality above 100", _infer(quality=101), BAD),
    ("frame id beyond int32", _infer(frame_id=2**31), BAD),
    ("odd audio", _infer(tail=b"\x00\x01\x02"), BAD),
    ("audio over 2 s", _infer(tail=bytes(64_002)), BAD),
    ("traceparent too short", _infer(tp=10, tail=TRACEPARENT[:10]), BAD),
    ("traceparent not hex", _infer(tp=55, tail=TRACEPARENT.replace(b"0af7", b"zzzz")), BAD),
    ("name not UTF-8", _infer(name=b"\xff\xfe"), BAD),
    ("unknown model", _infer(name=b"nobody"), "NOT_FOUND"),
    ("frame outside the video", _infer(frame_id=1_000_000), "OUT_OF_RANGE"),
    ("CANCEL with a body", _header(v2.CANCEL) + b"\x00", BAD),
    ("CREDIT of zero", _header(v2.CREDIT) + struct.pack("<I", 0), BAD),
    ("audio for no session", _header(v2.SESSION_AUDIO) + b"\x00\x00", "FAILED_PRECONDITION"),
    ("control for no session", _header(v2.SESSION_CONTROL) + b"\x02", "FAILED_PRECONDITION"),
    ("unknown control action", _header(v2.SESSION_CONTROL) + b"\x07", BAD),
    ("truncated SESSION_START", _header(v2.SESSION_START) + b"\x00" * 5, BAD),
]
#: gRPC requests the server must refuse, straight to it: (what, method, request, expected code).
GRPC: list[tuple[str, str, Any, grpc.StatusCode]] = [
    ("unknown model", "Infer", pb.InferRequest(model_name="nobody"), grpc.StatusCode.NOT_FOUND),
    ("negative frame", "Infer", pb.InferRequest(model_name=MODEL, frame_id=-1), grpc.StatusCode.OUT_OF_RANGE),
    (
        "quality 101",
        "Infer",
        pb.InferRequest(model_name=MODEL, jpeg_quality=101),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "unknown mode",
        "Infer",
        pb.InferRequest(model_name=MODEL, output_mode=cast(pb.OutputMode, 7)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "odd audio",
        "Infer",
        pb.InferRequest(model_name=MODEL, audio=pb.AudioWindow(pcm16=b"\x00" * 3)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "8 kHz audio",
        "Infer",
        pb.InferRequest(model_name=MODEL, audio=pb.AudioWindow(pcm16=bytes(320), sample_rate=8000)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "3 s of audio",
        "Infer",
        pb.InferRequest(model_name=MODEL, audio=pb.AudioWindow(pcm16=bytes(96_000))),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "centre outside the window",
        "Infer",
        pb.InferRequest(model_name=MODEL, audio=pb.AudioWindow(pcm16=bytes(320), center_sample=500)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "batch over the queue",
        "InferBatch",
        pb.InferBatchRequest(requests=[pb.InferRequest(model_name=MODEL)] * 65),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "load without admin",
        "LoadModel",
        pb.LoadModelRequest(path="../../etc"),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
]


def _error_code(reply: str | bytes) -> str:
    """The code of an error reply: JSON text (v1 and JSON) or a v2 ERROR."""
    if isinstance(reply, str):
        return str(json.loads(reply).get("code"))
    decoded = v2.decode_server(reply)
    assert isinstance(decoded, v2.ErrorReply), decoded
    return decoded.code


async def _recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT)


async def _v1_rounds(url: str, rounds: int, tally: Counter[str]) -> None:
    kinds: list[tuple[str, str | bytes, str]] = [*V1_BINARY, *JSON]
    async with connect(url, compression=None, max_size=None) as ws:
        for index in range(rounds):
            what, message, expected = kinds[index % len(kinds)]
            await ws.send(message)
            frame_id = index % 200
            await ws.send(v1.encode_request(v1.FrameRequest(MODEL, frame_id)))
            code = _error_code(await _recv(ws))
            assert code == expected, f"v1 {what}: {code}"
            tally["malformed"] += 1
            image = await _recv(ws)
            assert isinstance(image, bytes), f"v1 valid request after {what}: {image!r}"
            assert is_jpeg(image), f"v1 valid request after {what}: not a JPEG"
            tally["valid"] += 1


async def _v2_rounds(url: str, rounds: int, tally: Counter[str]) -> None:
    kinds: list[tuple[str, str | bytes, str]] = [*V2_BINARY, *JSON]
    async with connect(
        url, subprotocols=[Subprotocol(v2.SUBPROTOCOL)], compression=None, max_size=None
    ) as ws:
        for index in range(rounds):
            what, message, expected = kinds[index % len(kinds)]
            await ws.send(message)
            code = _error_code(await _recv(ws))
            assert code == expected, f"v2 {what}: {code}"
            tally["malformed"] += 1
            request_id, frame_id = 1000 + index, index % 200
            await ws.send(v2.encode_client(v2.InferRequest(request_id, MODEL, frame_id)))
            data = await _recv(ws)
            assert isinstance(data, bytes), f"v2 valid request after {what}: {data!r}"
            reply = v2.decode_server(data)
            assert isinstance(reply, v2.FrameReply), f"v2 valid request after {what}: {reply!r}"
            assert (reply.request_id, reply.frame_id) == (request_id, frame_id)
            assert is_jpeg(reply.image)
            tally["valid"] += 1


def _grpc_rounds(address: str, rounds: int, tally: Counter[str]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        for index in range(rounds):
            what, method, request, expected = GRPC[index % len(GRPC)]
            with pytest.raises(grpc.RpcError) as refused:
                getattr(stub, method)(request, timeout=10 * TIME_UNIT)
            assert refused.value.code() == expected, f"gRPC {what}: {refused.value.code()}"
            tally["malformed"] += 1
            reply = stub.Infer(
                pb.InferRequest(model_name=MODEL, frame_id=index % 200), timeout=10 * TIME_UNIT
            )
            assert is_jpeg(reply.image)
            tally["valid"] += 1


async def test_a_thousand_malformed_messages_among_valid_ones_leave_every_valid_one_answered(
    logs_dir: Path, demo_cache: Path, record: dict[str, Any]
) -> None:
    server = ServerProcess(logs_dir, cache_dir=demo_cache)
    server.start()
    proxy = ProxyProcess(logs_dir, grpc_addr=server.address)
    proxy.start()
    tallies: dict[str, Counter[str]] = {"v1": Counter(), "v2": Counter(), "grpc": Counter()}
    try:
        await asyncio.gather(
            _v1_rounds(proxy.ws_url, 400, tallies["v1"]),
            _v2_rounds(proxy.ws_url, 400, tallies["v2"]),
            asyncio.to_thread(_grpc_rounds, server.address, 200, tallies["grpc"]),
        )
        # A message over the size limit closes its connection (1009); the next connection works.
        async with connect(proxy.ws_url, compression=None, max_size=None) as ws:
            await ws.send(bytes((1 << 20) + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await _recv(ws)
        oversize_close = closed.value.rcvd.code if closed.value.rcvd is not None else None
        async with connect(proxy.ws_url, compression=None, max_size=None) as ws:
            await ws.send(v1.encode_request(v1.FrameRequest(MODEL, 3)))
            after_oversize = is_jpeg(bytes(await _recv(ws)))  # type: ignore[arg-type]
        both_alive = proxy.process is not None and proxy.process.poll() is None and server.process is not None
        both_alive = both_alive and server.process.poll() is None  # type: ignore[union-attr]
    finally:
        proxy.stop()
        server.stop()
    malformed = sum(t["malformed"] for t in tallies.values())
    record.update(
        malformed_sent=malformed,
        valid_answered=sum(t["valid"] for t in tallies.values()),
        by_protocol={name: dict(t) for name, t in tallies.items()},
        kinds={
            "v1 binary": len(V1_BINARY),
            "JSON": len(JSON),
            "v2 binary": len(V2_BINARY),
            "gRPC": len(GRPC),
        },
        oversize_close_code=oversize_close,
        served_after_oversize=after_oversize,
        processes_alive=both_alive,
        requests=2 * malformed,
    )

    assert malformed >= 1000
    assert all(t["valid"] == t["malformed"] for t in tallies.values())
    assert oversize_close == 1009
    assert after_oversize
    assert both_alive
