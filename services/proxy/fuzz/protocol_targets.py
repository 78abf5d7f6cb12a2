"""What the protocol fuzzers check on every input, as plain functions of the input's bytes.

Each target feeds one client-facing parser (v1 binary, v2 client and server messages, JSON text) and
checks the codec's promises, whatever the bytes are (the `http2` target, the proxy's own HTTP/2
client reading what a backend sends, has its own checks: `check_http2`):

* the parser returns a message or raises ProtocolError, nothing else;
* a ProtocolError carries a known status name and a message any reply can carry (valid UTF-8 text, at
  most the v2 error limit, so nothing is cut), and both error replies built from it are well-formed;
* what parses encodes back to the same bytes (v1, v2 client messages) or to a fixed point (v2 server
  messages, whose floats may be normalised once), and a JSON request's reply echoes its id and names.

A failed check raises AssertionError, which atheris reports as a crash. The same functions replay the
checked-in corpus and every crash ever found (`regressions/`) in the proxy's tests.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from types import MappingProxyType

import grpc

from lipsync_protocol import json_messages, v1, v2
from lipsync_protocol.errors import GRPC_STATUS_CODES, ProtocolError
from lipsync_proxy import http2


def check_error(error: ProtocolError, *, binary: bool = True) -> None:
    """A parser's refusal must be answerable without loss: as a JSON error reply, and as a v2 ERROR when
    it refused a `binary` message (whose request id, when read, is a v2 one)."""
    assert error.code in GRPC_STATUS_CODES, error
    assert error.code != "OK", error
    text = error.message.encode("utf-8")  # a lone surrogate here would break the WebSocket text frame
    assert 0 < len(text) <= v2.MAX_ERROR_MESSAGE_BYTES, error
    rid = error.request_id
    assert rid is None or isinstance(rid, str | int), error
    reply = json.loads(json_messages.error_reply(error.code, error.message, id=rid))
    assert (reply["type"], reply["code"], reply["message"]) == ("error", error.code, error.message)
    assert reply.get("id") == rid
    if binary:
        assert rid is None or (isinstance(rid, int) and 0 <= rid <= v2.MAX_REQUEST_ID), error
        answer = v2.decode_server(v2.encode_error(rid or 0, error.code, error.message))
        assert isinstance(answer, v2.ErrorReply), answer
        assert answer.message == error.message, answer


def check_v1(data: bytes) -> None:
    """The seed's binary request, either layout: decoded, it encodes to exactly the same bytes; a
    code-layout request's audio window, when its format is known, holds the frame's instant, and its
    reply reads back as it was built."""
    try:
        request = v1.decode_request(data)
    except ProtocolError as error:
        check_error(error)
        return
    assert v1.encode_request(request) == data, request
    if isinstance(request, v1.CropRequest):
        if request.sample_rate is not None:
            assert 0 <= request.center_sample < len(request.audio) // 2, request
        bounds = (0.0, 180.0, 720.5, 360.25)
        reply = v1.encode_crop_reply(request.frame_id, len(request.audio), request.audio, bounds)
        expected = v1.CropReply(request.frame_id, len(request.audio), request.audio, bounds)
        assert v1.decode_crop_reply(reply) == expected, request


def check_v2_client(data: bytes) -> None:
    """A v2 client message: decoded, it encodes to exactly the same bytes."""
    try:
        message = v2.decode_client(data)
    except ProtocolError as error:
        check_error(error)
        return
    assert v2.encode_client(message) == data, message


def check_v2_server(data: bytes) -> None:
    """A v2 server message (what clients and the load tests parse): decoded and encoded again, it is a
    fixed point of decode and encode (a NaN's payload bits may change once, nothing else)."""
    try:
        message = v2.decode_server(data)
    except ProtocolError as error:
        check_error(error)
        return
    once = v2.encode_server(message)
    assert len(once) == len(data), message
    assert v2.encode_server(v2.decode_server(once)) == once, message


def check_json(data: bytes) -> None:
    """A JSON text message: parsed, its replies are valid JSON that echo its id and its fields."""
    try:
        request = json_messages.parse(data)
    except ProtocolError as error:
        check_error(error, binary=False)
        return
    match request:
        case json_messages.InferenceRequest():
            reply = json.loads(
                json_messages.inference_error(
                    request.id, request.model_name, request.frame_id, "NOT_FOUND", "no such model"
                )
            )
            assert (reply["model_name"], reply["frame_id"]) == (request.model_name, request.frame_id)
        case json_messages.GetVideoFrameRequest():
            reply = json.loads(
                json_messages.error_reply(
                    "OUT_OF_RANGE",
                    "x",
                    id=request.id,
                    model_name=request.model_name,
                    frame_id=request.frame_id,
                )
            )
            assert (reply["model_name"], reply["frame_id"]) == (request.model_name, request.frame_id)
        case json_messages.GetMetadataRequest():
            reply = json.loads(json_messages.metadata_reply(request.id, request.model_name, 1, 25.0, 2, 2))
            assert reply["model_name"] == request.model_name
        case json_messages.ListModelsRequest():
            reply = json.loads(json_messages.model_list_reply(request.id, []))
        case json_messages.PingRequest():
            reply = json.loads(json_messages.pong(request.id))
        case json_messages.BinaryProbe():
            reply = json.loads(json_messages.protocol_ack(request.id))
        case json_messages.GetAudioRequest():
            reply = json.loads(json_messages.audio_reply(request.id, request.model_name, b"RIFF", 16000, 1.0))
            assert reply["model_name"] == request.model_name
    assert reply.get("id") == request.id, request


def _whole_frames(data: bytes) -> list[int]:
    """The types of the HTTP/2 frames `data` consists of; fails unless it is whole frames."""
    kinds = []
    position = 0
    while position < len(data):
        assert len(data) - position >= 9, data[position:]
        word, _, _ = struct.unpack_from(">I B I", data, position)
        position += 9 + (word >> 8)
        assert position <= len(data), data
        kinds.append(word & 0xFF)
    return kinds


def check_http2(data: bytes) -> None:
    """What a backend sends on one of the proxy's own HTTP/2 connections while three calls are open:
    nothing escapes the client, every call ends once, with its reply or a CallError with a status,
    by the time the connection is gone, and what the client sends is whole frames (a GOAWAY last when
    it gave up on a broken peer)."""
    client = http2.Http2Client("fuzz:1")
    calls = [
        client.call("/lipsync.v1.LipSync/InferBatch", (("traceparent", "x"),), 1.0, b"m") for _ in range(3)
    ]
    assert calls == [1, 3, 5], calls
    written = bytearray(b"".join(client.data_to_send()))
    events: list[http2.Event] = []
    # The first byte sets the size of the reads, as the kernel's would vary.
    step, data = (data[0] % 64 + 1, data[1:]) if data else (1, data)
    position = 0
    while position < len(data) and not client.should_close:
        buffer = client.get_buffer()
        size = min(len(buffer), step, len(data) - position)
        buffer[:size] = data[position : position + size]
        position += size
        client.buffer_updated(size)
        events += client.events_received()
        written += b"".join(client.data_to_send())
    client.connection_lost(None)
    events += client.events_received()
    assert sorted(event.stream_id for event in events) == calls, events
    for event in events:
        if isinstance(event, http2.Answered):
            assert isinstance(event.message, bytearray), event
        else:
            error = event.error
            assert isinstance(error.code, grpc.StatusCode), error
            assert error.code is not grpc.StatusCode.OK, error
            assert isinstance(error.details, str), error  # empty when the server sent no grpc-message
    assert written.startswith(http2.PREFACE)
    kinds = _whole_frames(bytes(written[len(http2.PREFACE) :]))
    if http2.GOAWAY in kinds:
        assert kinds[-1] == http2.GOAWAY, kinds


#: The fuzz targets by name: `fuzz_protocol.py NAME` fuzzes one, the corpus directories are named so.
TARGETS: Mapping[str, Callable[[bytes], None]] = MappingProxyType(
    {
        "v1": check_v1,
        "v2_client": check_v2_client,
        "v2_server": check_v2_server,
        "json": check_json,
        "http2": check_http2,
    }
)
