"""What the protocol fuzzers check on every input, as plain functions of the input's bytes.

Each target feeds one client-facing parser (v1 binary, v2 client and server messages, JSON text) and
checks the codec's promises, whatever the bytes are:

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
from collections.abc import Callable, Mapping
from types import MappingProxyType

from lipsync_proxy.protocol import json_messages, v1, v2
from lipsync_proxy.protocol.errors import GRPC_STATUS_CODES, ProtocolError


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
    """The seed's binary request: decoded, it encodes to exactly the same bytes."""
    try:
        request = v1.decode_request(data)
    except ProtocolError as error:
        check_error(error)
        return
    assert v1.encode_request(request) == data, request


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
    assert reply.get("id") == request.id, request


#: The fuzz targets by name: `fuzz_protocol.py NAME` fuzzes one, the corpus directories are named so.
TARGETS: Mapping[str, Callable[[bytes], None]] = MappingProxyType(
    {"v1": check_v1, "v2_client": check_v2_client, "v2_server": check_v2_server, "json": check_json}
)
