"""JSON text messages: requests parsed into typed dataclasses, replies built as compact JSON text.

Any connection accepts these text messages (v1 and v2 alike). Every reply echoes the request's ``"id"``
when it had one. Unknown fields of a request are ignored, so clients may add their own (the seed's
client sent a timestamp); the fields this module reads are checked strictly: a bool is not an integer,
a float is not a frame id, and a wrong type is an ``INVALID_ARGUMENT``, never a guess.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import (
    Bounds,
    OutputMode,
    Timings,
    check_frame_id,
    check_model_name,
    check_traceparent,
    safe_repr,
)

#: A request id as the client sent it: echoed verbatim in the reply; None when the request had none.
JsonId = str | int | None

#: What an inference reply carries instead of the image unless ``include_image`` was set (the seed's text).
PREDICTION_PLACEHOLDER = "use_binary_protocol_for_image_data"
#: The text of ``protocol_ack``, as the seed's proxy wrote it.
PROTOCOL_ACK_MESSAGE = "Binary protocol supported"
#: The seed's name of the package's base video, the only one ``get_video_frame`` serves.
FULL_BODY = "full_body"
#: A string id is at most this many characters; an integer id fits a signed 64-bit integer.
MAX_ID_LENGTH = 256
_MIN_INT_ID = -(2**63)
_MAX_INT_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """``{"type":"inference"}`` (or no type): one lip-synced frame."""

    id: JsonId
    model_name: str
    frame_id: int
    include_image: bool = False
    output_mode: OutputMode = OutputMode.FULL_FRAME
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class ListModelsRequest:
    """``{"type":"list_models"}``: the backend's models."""

    id: JsonId = None


@dataclass(frozen=True, slots=True)
class GetMetadataRequest:
    """``{"type":"get_metadata"}``: one model's frame count, fps and frame size."""

    id: JsonId
    model_name: str


@dataclass(frozen=True, slots=True)
class GetVideoFrameRequest:
    """``{"type":"get_video_frame"}``: one unmodified base frame of a model. ``video_type`` is the
    seed's name of the package video it comes from; only ``"full_body"``, the base video, is served."""

    id: JsonId
    model_name: str
    frame_id: int
    video_type: str = FULL_BODY


@dataclass(frozen=True, slots=True)
class GetAudioRequest:
    """``{"type":"get_audio"}``: the package's own audio track, to play in sync with its frames."""

    id: JsonId
    model_name: str


@dataclass(frozen=True, slots=True)
class BinaryProbe:
    """The seed's ``{"type":"switch_to_binary"}`` (``switch`` true) and ``{"type":"test_binary"}``:
    answered with ``protocol_ack``. After a switch, a v1 connection's ``get_video_frame`` is answered by
    the binary message of ``protocol.v1.encode_video_frame``."""

    id: JsonId
    switch: bool


@dataclass(frozen=True, slots=True)
class PingRequest:
    """``{"type":"ping"}``: answered with ``{"type":"pong"}`` by the proxy itself."""

    id: JsonId = None


JsonRequest = (
    InferenceRequest
    | ListModelsRequest
    | GetMetadataRequest
    | GetVideoFrameRequest
    | GetAudioRequest
    | BinaryProbe
    | PingRequest
)


def parse(text: str | bytes) -> JsonRequest:
    """Parse one JSON text message; raise ProtocolError (with ``request_id`` when the id was readable)
    for anything that is not a valid request."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("a JSON message must be UTF-8 text") from None
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers too long to convert; deep nesting recurses.
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("a JSON message must be an object")
    request_id = _read_id(message)
    kind = message.get("type", "inference")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError(
            f"unknown message type {safe_repr(kind)}; expected one of: {', '.join(_PARSERS)}",
            request_id=request_id,
        )
    return parser(message, request_id)


def _read_id(message: dict[str, Any]) -> JsonId:
    value = message.get("id")
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) <= MAX_ID_LENGTH and _encodable(value):
            return value
        raise ProtocolError(f'"id" must be Unicode text of at most {MAX_ID_LENGTH} characters')
    if isinstance(value, int) and not isinstance(value, bool) and _MIN_INT_ID <= value <= _MAX_INT_ID:
        return value
    raise ProtocolError('"id" must be a string or a 64-bit integer')


def _encodable(text: str) -> bool:
    # json.loads turns "\ud800" into a lone surrogate, which no UTF-8 text frame can carry back.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _model_name(message: dict[str, Any], request_id: JsonId) -> str:
    value = message.get("model_name")
    if not isinstance(value, str):
        raise ProtocolError('"model_name" must be a string', request_id=request_id)
    return check_model_name(value, request_id)


def _frame_id(message: dict[str, Any], request_id: JsonId) -> int:
    value = message.get("frame_id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError('"frame_id" must be an integer', request_id=request_id)
    return check_frame_id(value, request_id)


def _parse_inference(message: dict[str, Any], request_id: JsonId) -> InferenceRequest:
    model_name = _model_name(message, request_id)
    frame_id = _frame_id(message, request_id)
    include_image = message.get("include_image", False)
    if not isinstance(include_image, bool):
        raise ProtocolError('"include_image" must be true or false', request_id=request_id)
    mode = message.get("output_mode", OutputMode.FULL_FRAME.value)
    try:
        output_mode = OutputMode(mode)
    except ValueError:
        raise ProtocolError(
            f'"output_mode" must be "{OutputMode.FULL_FRAME}" or "{OutputMode.FACE_CROP}"',
            request_id=request_id,
        ) from None
    traceparent = message.get("traceparent")
    if traceparent is not None:
        if not isinstance(traceparent, str):
            raise ProtocolError('"traceparent" must be a string', request_id=request_id)
        check_traceparent(traceparent, request_id)
    return InferenceRequest(request_id, model_name, frame_id, include_image, output_mode, traceparent)


def _parse_list_models(message: dict[str, Any], request_id: JsonId) -> ListModelsRequest:
    return ListModelsRequest(request_id)


def _parse_get_metadata(message: dict[str, Any], request_id: JsonId) -> GetMetadataRequest:
    return GetMetadataRequest(request_id, _model_name(message, request_id))


def _parse_get_video_frame(message: dict[str, Any], request_id: JsonId) -> GetVideoFrameRequest:
    model_name, frame_id = _model_name(message, request_id), _frame_id(message, request_id)
    video_type = message.get("video_type", FULL_BODY)
    if not isinstance(video_type, str):
        raise ProtocolError('"video_type" must be a string', request_id=request_id)
    if video_type != FULL_BODY:
        raise ProtocolError(
            f'"video_type" {safe_repr(video_type)} is not served; the base video is "{FULL_BODY}"',
            request_id=request_id,
        )
    return GetVideoFrameRequest(request_id, model_name, frame_id, video_type)


def _parse_get_audio(message: dict[str, Any], request_id: JsonId) -> GetAudioRequest:
    return GetAudioRequest(request_id, _model_name(message, request_id))


def _parse_switch_to_binary(message: dict[str, Any], request_id: JsonId) -> BinaryProbe:
    return BinaryProbe(request_id, switch=True)


def _parse_test_binary(message: dict[str, Any], request_id: JsonId) -> BinaryProbe:
    return BinaryProbe(request_id, switch=False)


def _parse_ping(message: dict[str, Any], request_id: JsonId) -> PingRequest:
    return PingRequest(request_id)


_PARSERS: dict[str, Callable[[dict[str, Any], JsonId], JsonRequest]] = {
    "inference": _parse_inference,
    "list_models": _parse_list_models,
    "get_metadata": _parse_get_metadata,
    "get_video_frame": _parse_get_video_frame,
    "get_audio": _parse_get_audio,
    "ping": _parse_ping,
    "switch_to_binary": _parse_switch_to_binary,
    "test_binary": _parse_test_binary,
}


def inference_reply(
    id: JsonId,
    frame_id: int,
    model_name: str,
    processing_time_ms: float,
    image: bytes | memoryview | None,
    bounds: Bounds | None,
    timings: Timings | None,
    output_mode: OutputMode,
    size: int,
) -> str:
    """A successful inference: ``image`` is base64-encoded into ``image_base64`` when given (the
    request's ``include_image``), else the seed's ``prediction_data`` placeholder stands in for it.
    ``size`` is the JPEG's length in bytes either way; ``processing_time_ms`` is the proxy's total."""
    reply = _head("inference", id)
    reply["success"] = True
    reply["model_name"] = model_name
    reply["frame_id"] = frame_id
    reply["output_mode"] = str(output_mode)
    reply["processing_time_ms"] = _ms(processing_time_ms)
    reply["size"] = size
    reply["bounds"] = None if bounds is None else list(bounds)
    reply["timings"] = None if timings is None else _timings(timings)
    if image is None:
        reply["prediction_data"] = PREDICTION_PLACEHOLDER
    else:
        reply["image_base64"] = base64.b64encode(image).decode("ascii")
    return _dumps(reply)


def inference_error(id: JsonId, model_name: str, frame_id: int, code: str, message: str) -> str:
    """A failed inference: ``success`` false, ``code`` the gRPC status name, ``error`` the message."""
    reply = _head("inference", id)
    reply["success"] = False
    reply["model_name"] = model_name
    reply["frame_id"] = frame_id
    reply["code"] = code
    reply["error"] = message
    return _dumps(reply)


def model_list_reply(id: JsonId, models: Sequence[Mapping[str, object]]) -> str:
    """The backend's models: ``models`` lists their names (as the seed did), ``details`` the given
    per-model objects (name, frame_count, fps, width, height, engine, ...) in the same order."""
    reply = _head("model_list", id)
    reply["models"] = [model["name"] for model in models]
    reply["count"] = len(models)
    reply["details"] = [dict(model) for model in models]
    return _dumps(reply)


def metadata_reply(
    id: JsonId, model_name: str, frame_count: int, fps: float, width: int, height: int, **extra: object
) -> str:
    """One model's metadata; ``extra`` adds further JSON fields (``engine``, ``has_audio``, ...)."""
    clash = {"type", "id"} & extra.keys()
    if clash:
        raise ValueError(f"metadata fields may not be named {sorted(clash)}")
    reply = _head("metadata", id)
    reply.update(model_name=model_name, frame_count=frame_count, fps=fps, width=width, height=height)
    reply.update(extra)
    return _dumps(reply)


def video_frame_reply(
    id: JsonId, model_name: str, frame_id: int, image: bytes | memoryview, width: int, height: int
) -> str:
    """One unmodified base frame, its JPEG in ``image_base64``."""
    reply = _head("video_frame", id)
    reply.update(model_name=model_name, frame_id=frame_id, width=width, height=height, size=len(image))
    reply["image_base64"] = base64.b64encode(image).decode("ascii")
    return _dumps(reply)


def audio_reply(id: JsonId, model_name: str, wav: bytes, sample_rate: int, duration_s: float) -> str:
    """The package's audio track: a PCM16 mono WAV file in ``audio_base64``."""
    reply = _head("audio", id)
    reply.update(
        model_name=model_name, format="wav", sample_rate=sample_rate, duration_s=duration_s, size=len(wav)
    )
    reply["audio_base64"] = base64.b64encode(wav).decode("ascii")
    return _dumps(reply)


def pong(id: JsonId) -> str:
    """The answer to a ping."""
    return _dumps(_head("pong", id))


def protocol_ack(id: JsonId) -> str:
    """The answer to ``switch_to_binary`` and ``test_binary``, in the seed's words."""
    reply = _head("protocol_ack", id)
    reply["message"] = PROTOCOL_ACK_MESSAGE
    return _dumps(reply)


def error_reply(
    code: str, message: str, *, id: JsonId = None, model_name: str | None = None, frame_id: int | None = None
) -> str:
    """The error reply of docs/protocol.md (v1 failures, malformed or unknown messages, failed control
    requests): ``code`` is the gRPC status name, ``message`` the text and ``error`` the same text under
    the seed's name; ``model_name`` and ``frame_id`` are null when unknown."""
    reply = _head("error", id)
    reply.update(code=code, message=message, model_name=model_name, frame_id=frame_id, error=message)
    return _dumps(reply)


def _head(kind: str, id: JsonId) -> dict[str, Any]:
    return {"type": kind} if id is None else {"type": kind, "id": id}


def _ms(value: float) -> float | None:
    # JSON has no NaN or Infinity; a browser's JSON.parse would reject the whole reply.
    return round(value, 3) if math.isfinite(value) else None


def _timings(timings: Timings) -> dict[str, float | int | None]:
    return {
        "queue_ms": _ms(timings.queue_ms),
        "audio_features_ms": _ms(timings.audio_features_ms),
        "inference_ms": _ms(timings.inference_ms),
        "composite_ms": _ms(timings.composite_ms),
        "encode_ms": _ms(timings.encode_ms),
        "total_ms": _ms(timings.total_ms),
        "batch_size": timings.batch_size,
    }


def _dumps(reply: dict[str, Any]) -> str:
    return json.dumps(reply, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
