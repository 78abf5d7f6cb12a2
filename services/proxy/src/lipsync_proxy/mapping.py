"""Each client request mapped to its gRPC call, and the reply built from the result.

Every function here answers one request and never raises for a failed call: a malformed request, a
gRPC error or the global cap becomes the protocol's error reply. Replies are what the WebSocket sends:
`str` for a text message, bytes-like for a binary one.

While tracing is on, each decoded request (but a ping) is answered inside its span
(`lipsync_proxy.spans`), whose context its gRPC call carries (a v1 binary frame's span ends from its
call's done callback, as the frame is answered).

A failed request leaves one WARNING line in the log, with its code, model, frame and client, as the
seed's proxy logged each one (`log_failure`). What the requests of one connection share (its client
address, and whether a v1 client switched its video frames to binary) is the `ClientConnection` its
handler sets with `serve_connection`: every task and callback of the connection sees it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from lipsync_protocol import json_messages, v1, v2
from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import SAMPLE_RATE, Bounds, OutputMode, Timings
from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy import spans, wire
from lipsync_proxy.backend import Frame
from lipsync_proxy.errors import OverloadedError, ProxyError
from lipsync_proxy.metrics import V1_FRAME
from lipsync_proxy.state import ProxyState

logger = logging.getLogger(__name__)

Reply = str | bytes | memoryview

# Labels of the requests metric.
V2_INFER = "v2_infer"
INVALID = "invalid"
OK = "OK"


def _log_frame(model_name: str, frame_id: int, grpc_s: float, total_s: float, size: int) -> None:
    # The seed's line, with the same fields. It is written at the event loop's next turn, so after the
    # reply has left: the client does not wait for the log's write. (The line keeps the context it was
    # made in, hence the request span's ids.)
    asyncio.get_running_loop().call_soon(
        logger.info,
        "%s frame %d: grpc=%.1fms total=%.1fms size=%s bytes",
        model_name,
        frame_id,
        grpc_s * 1000.0,
        total_s * 1000.0,
        f"{size:,}",
    )


def _count(state: ProxyState, kind: str, code: str, started: float) -> None:
    state.metrics.count_request(kind, code, time.perf_counter() - started)
    if code != OK and state.tracer is not None:
        spans.set_code(trace.get_current_span(), code)


class ClientConnection:
    """What the requests of one WebSocket connection share."""

    __slots__ = ("address", "binary_video_frames", "v1")

    def __init__(self, address: str, v1: bool) -> None:
        #: The client's address, as the rate limits see it.
        self.address = address
        #: A connection without a subprotocol: the only kind whose binary messages are the seed's.
        self.v1 = v1
        #: Set by the seed's `switch_to_binary`: `get_video_frame` is then answered in binary.
        self.binary_video_frames = False


_connection: ContextVar[ClientConnection | None] = ContextVar("lipsync_proxy_connection", default=None)


def serve_connection(address: str, v1: bool) -> None:
    """Start serving a connection in the current context: the tasks it creates, and the callbacks it
    adds, see the connection's `ClientConnection` from here on."""
    _connection.set(ClientConnection(address, v1))


def log_failure(kind: str, code: str, message: str, model_name: str | None, frame_id: int | None) -> None:
    """The one log line of a failed request, at WARNING: what operators watch."""
    connection = _connection.get()
    logger.warning(
        "%s failed: %s %s (model=%s frame=%s client=%s)",
        kind,
        code,
        message,
        model_name,
        frame_id,
        connection.address if connection is not None else None,
    )


def _failed(
    state: ProxyState,
    kind: str,
    error: ProxyError | ProtocolError,
    started: float,
    model_name: str | None = None,
    frame_id: int | None = None,
) -> None:
    """Count and log a failed request."""
    _count(state, kind, error.code, started)
    log_failure(kind, error.code, error.message, model_name, frame_id)


def overloaded_error(state: ProxyState) -> ProxyError:
    """The error of a request refused because the global in-flight cap is reached."""
    return OverloadedError(state.settings.max_inflight_total)


class FrameCall:
    """A v1 frame whose backend call is under way (`start_v1_frame`): `reply()` once `future` is done
    and not cancelled, else `give_up()`."""

    __slots__ = ("called", "future", "request", "span", "started", "state")

    def __init__(
        self,
        state: ProxyState,
        request: v1.V1Request,
        started: float,
        future: asyncio.Future[lipsync_pb2.InferResponse],
        span: Span | None,
    ) -> None:
        self.state = state
        self.request = request
        self.started = started
        self.called = time.perf_counter()
        #: The frame's `InferResponse`; cancelling it gives the frame up (`BackendClient.submit`).
        self.future = future
        #: The request's span while tracing is on (recorded or not); it ends with the reply.
        self.span = span

    def reply(self) -> Reply:
        """The JPEG of the full frame or the crop reply, or a text error reply; its span, if any, ends
        with it (and is the current one meanwhile, for the frame's log line)."""
        span, self.span = self.span, None
        if span is None or not span.is_recording():
            # A span the sampler dropped records nothing, its end included.
            return self._reply()[0]
        with trace.use_span(span, end_on_exit=False):
            reply, code = self._reply()
        spans.end(span, code, reply)
        return reply

    def _reply(self) -> tuple[Reply, str]:
        try:
            frame = self.state.backend.check(self.future.result())
        except ProxyError as exc:
            return _v1_failed(self.state, self.request, self.started, exc), exc.code
        return _v1_answered(self.state, self.request, self.started, self.called, frame), OK

    def give_up(self) -> None:
        """The frame was given up (its client went away); its span, if not ended yet, ends CANCELLED."""
        if self.span is not None:
            spans.end(self.span, spans.CANCELLED, "")
            self.span = None


def start_v1_frame(state: ProxyState, message: bytes, started: float) -> Reply | FrameCall:
    """A v1 binary request, without awaiting anything: its error reply at once, or its backend call
    under way. The connection answers it from the call's done callback, without a task of its own
    (`lipsync_proxy.connection`)."""
    request = _v1_request(state, message, started)
    if isinstance(request, str):
        return request
    span = None
    if state.tracer is not None:
        attributes = spans.frame_attributes(request.model_name, request.frame_id, _v1_mode(request))
        span = spans.start(state.tracer, V1_FRAME, started, None, attributes)
    if state.overloaded:
        error = overloaded_error(state)
        if span is not None:
            spans.end(span, error.code, "")
        return _v1_failed(state, request, started, error)
    recorded = span if span is not None and span.is_recording() else None
    return FrameCall(
        state, request, started, state.backend.submit(_v1_infer_request(request), recorded), span
    )


def _v1_mode(request: v1.V1Request) -> OutputMode:
    return OutputMode.FACE_CROP if isinstance(request, v1.CropRequest) else OutputMode.FULL_FRAME


def _v1_infer_request(request: v1.V1Request) -> bytes:
    """The serialized `InferRequest` of a v1 request: a full frame, or a face crop with the client's
    audio where its format is known (`v1.CropRequest.sample_rate`)."""
    if isinstance(request, v1.FrameRequest):
        return wire.encode_infer_request(request.model_name.encode(), request.frame_id)
    message = lipsync_pb2.InferRequest(
        model_name=request.model_name,
        frame_id=request.frame_id,
        output_mode=lipsync_pb2.OUTPUT_MODE_FACE_CROP,
    )
    rate = request.sample_rate
    if rate is not None:
        message.audio.pcm16 = request.audio
        message.audio.sample_rate = rate
        message.audio.center_sample = request.center_sample
    return message.SerializeToString()


def _v1_request(state: ProxyState, message: bytes, started: float) -> v1.V1Request | str:
    """The decoded request, or the text error reply of a malformed one."""
    try:
        return v1.decode_request(message)
    except ProtocolError as exc:
        _failed(state, V1_FRAME, exc, started)
        return json_messages.error_reply(exc.code, exc.message)


def _v1_failed(state: ProxyState, request: v1.V1Request, started: float, error: ProxyError) -> str:
    _failed(state, V1_FRAME, error, started, request.model_name, request.frame_id)
    return json_messages.error_reply(
        error.code, error.message, model_name=request.model_name, frame_id=request.frame_id
    )


def _v1_answered(
    state: ProxyState, request: v1.V1Request, started: float, called: float, frame: Frame
) -> Reply:
    """The full frame's JPEG as it came (README layout), or the crop reply (code layout)."""
    done = time.perf_counter()
    state.metrics.count_request(V1_FRAME, OK, done - started)
    reply, image = frame
    if state.log_frames:
        _log_frame(request.model_name, request.frame_id, done - called, done - started, len(image))
    if isinstance(request, v1.FrameRequest):
        return image
    bounds = tuple(float(v) for v in bounds_of(reply)) if reply.HasField("bounds") else ()
    return v1.encode_crop_reply(reply.frame_id, (done - started) * 1000.0, image, bounds)


async def json_message(state: ProxyState, text: str | bytes, started: float) -> Reply:
    """A JSON text message of any type: its JSON reply (or, on a v1 connection switched to binary, a
    video frame's binary message)."""
    try:
        request = json_messages.parse(text)
    except ProtocolError as exc:
        _failed(state, INVALID, exc, started)
        return json_messages.error_reply(exc.code, exc.message, id=exc.request_id)
    match request:
        case json_messages.PingRequest():
            # Answered by the proxy itself: nothing to trace.
            _count(state, "ping", OK, started)
            return json_messages.pong(request.id)
        case json_messages.BinaryProbe():
            return _binary_probe(state, request, started)
        case json_messages.InferenceRequest():
            kind, reply = "inference", _inference(state, request, started)
        case _:
            kind = _LOOKUP_KINDS[type(request)]
            reply = _lookup_reply(state, request, kind, started)
    if state.tracer is None:
        return await reply
    traceparent = request.traceparent if isinstance(request, json_messages.InferenceRequest) else None
    return await spans.traced(state.tracer, kind, started, traceparent, _json_attributes(request), reply)


def _binary_probe(state: ProxyState, request: json_messages.BinaryProbe, started: float) -> str:
    """The seed's `switch_to_binary` / `test_binary`, answered by the proxy itself. A switch turns a v1
    connection's `get_video_frame` replies binary; a v2 connection's binary messages are v2's own."""
    kind = "switch_to_binary" if request.switch else "test_binary"
    connection = _connection.get()
    if request.switch:
        if connection is None or not connection.v1:
            error = ProtocolError(
                "switch_to_binary is for connections without a subprotocol; lipsync.v2 is binary already",
                request_id=request.id,
                code="FAILED_PRECONDITION",
            )
            _failed(state, kind, error, started)
            return json_messages.error_reply(error.code, error.message, id=request.id)
        connection.binary_video_frames = True
    _count(state, kind, OK, started)
    return json_messages.protocol_ack(request.id)


def _json_attributes(request: json_messages.JsonRequest) -> dict[str, AttributeValue]:
    """The span attributes of a JSON request: what it names of model, frame and output mode."""
    if isinstance(request, json_messages.InferenceRequest):
        return spans.frame_attributes(request.model_name, request.frame_id, request.output_mode)
    attributes: dict[str, AttributeValue] = {}
    if isinstance(
        request,
        json_messages.GetMetadataRequest | json_messages.GetVideoFrameRequest | json_messages.GetAudioRequest,
    ):
        attributes[spans.MODEL] = request.model_name
    if isinstance(request, json_messages.GetVideoFrameRequest):
        attributes[spans.FRAME_ID] = request.frame_id
    return attributes


LookupRequest = (
    json_messages.ListModelsRequest
    | json_messages.GetMetadataRequest
    | json_messages.GetVideoFrameRequest
    | json_messages.GetAudioRequest
)
_LOOKUP_KINDS = {
    json_messages.ListModelsRequest: "list_models",
    json_messages.GetMetadataRequest: "get_metadata",
    json_messages.GetVideoFrameRequest: "get_video_frame",
    json_messages.GetAudioRequest: "get_audio",
}


async def _lookup_reply(state: ProxyState, request: LookupRequest, kind: str, started: float) -> Reply:
    # Decided when the request is read: its reply is binary when a switch_to_binary came before it.
    connection = _connection.get()
    binary = connection is not None and connection.binary_video_frames
    try:
        if state.overloaded:
            raise overloaded_error(state)
        reply = await _lookup(state, request, binary)
    except ProxyError as exc:
        model_name = getattr(request, "model_name", None)
        frame_id = getattr(request, "frame_id", None)
        _failed(state, kind, exc, started, model_name, frame_id)
        return json_messages.error_reply(
            exc.code, exc.message, id=request.id, model_name=model_name, frame_id=frame_id
        )
    _count(state, kind, OK, started)
    return reply


async def _lookup(state: ProxyState, request: LookupRequest, binary: bool) -> Reply:
    backend = state.backend
    match request:
        case json_messages.ListModelsRequest():
            models = await backend.list_models()
            return json_messages.model_list_reply(request.id, [model_summary(m) for m in models])
        case json_messages.GetMetadataRequest():
            info = await backend.model_info(request.model_name)
            summary = model_summary(info)
            del summary["name"], summary["frame_count"], summary["fps"], summary["width"], summary["height"]
            # The seed's fields, which its clients check.
            summary["success"] = True
            summary["audio_path"] = info.audio_path
            summary["bounds"] = list(bounds_of(info)) if info.HasField("bounds") else None
            return json_messages.metadata_reply(
                request.id, info.name, info.frame_count, info.fps, info.width, info.height, **summary
            )
        case json_messages.GetVideoFrameRequest():
            frame = await backend.video_frame(request.model_name, request.frame_id)
            if binary:
                return v1.encode_video_frame(request.frame_id, request.video_type, frame.image)
            return json_messages.video_frame_reply(
                request.id, request.model_name, request.frame_id, frame.image, frame.width, frame.height
            )
        case json_messages.GetAudioRequest():
            audio = await backend.model_audio(request.model_name)
            return json_messages.audio_reply(
                request.id, request.model_name, audio.wav, audio.sample_rate, audio.duration_s
            )


def model_summary(info: lipsync_pb2.ModelInfo) -> dict[str, object]:
    """A model's metadata as JSON fields."""
    summary: dict[str, object] = {
        "name": info.name,
        "engine": info.engine,
        "state": lipsync_pb2.ModelState.Name(info.state).removeprefix("MODEL_STATE_").lower(),
        "frame_count": info.frame_count,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "available_videos": list(info.available_videos),
        "has_audio": info.has_audio,
        "audio_duration_s": info.audio_duration_s,
        "package_format": info.package_format,
    }
    if info.error:
        summary["error"] = info.error
    return summary


_PROTO_MODES = {
    OutputMode.FULL_FRAME: lipsync_pb2.OUTPUT_MODE_FULL_FRAME,
    OutputMode.FACE_CROP: lipsync_pb2.OUTPUT_MODE_FACE_CROP,
}


def proto_mode(mode: OutputMode) -> lipsync_pb2.OutputMode:
    """The proto enum value of an output mode."""
    return _PROTO_MODES[mode]


def output_mode(wire_mode: int, requested: OutputMode) -> OutputMode:
    """The mode of a reply's image (its `output_mode` field); the requested one when the server left it
    unset."""
    try:
        return OutputMode.from_wire(wire_mode)
    except KeyError:
        return requested


def bounds_of(reply: lipsync_pb2.InferResponse | lipsync_pb2.ModelInfo) -> tuple[int, int, int, int]:
    b = reply.bounds
    return (b.x1, b.y1, b.x2, b.y2)


def timings_of(reply: lipsync_pb2.InferResponse) -> tuple[float, float, float, float, float, float, int]:
    t = reply.timings
    return (
        t.queue_ms,
        t.audio_features_ms,
        t.inference_ms,
        t.composite_ms,
        t.encode_ms,
        t.total_ms,
        t.batch_size,
    )


async def _infer(
    state: ProxyState, kind: str, request: lipsync_pb2.InferRequest, traceparent: str | None, started: float
) -> Frame | ProxyError:
    """A JSON or v2 frame's reply from a backend, or the error that came instead, counted and logged."""
    try:
        if state.overloaded:
            raise overloaded_error(state)
        called = time.perf_counter()
        frame = await state.backend.infer(request.SerializeToString(), traceparent)
    except ProxyError as exc:
        _failed(state, kind, exc, started, request.model_name, request.frame_id)
        return exc
    done = time.perf_counter()
    _count(state, kind, OK, started)
    if state.log_frames:
        _log_frame(request.model_name, request.frame_id, done - called, done - started, len(frame.image))
    return frame


async def _inference(state: ProxyState, request: json_messages.InferenceRequest, started: float) -> Reply:
    message = lipsync_pb2.InferRequest(
        model_name=request.model_name, frame_id=request.frame_id, output_mode=proto_mode(request.output_mode)
    )
    frame = await _infer(state, "inference", message, request.traceparent, started)
    if isinstance(frame, ProxyError):
        return json_messages.inference_error(
            request.id, request.model_name, request.frame_id, frame.code, frame.message
        )
    reply, image = frame
    return json_messages.inference_reply(
        request.id,
        reply.frame_id,
        request.model_name,
        (time.perf_counter() - started) * 1000.0,
        image if request.include_image else None,
        Bounds(*bounds_of(reply)) if reply.HasField("bounds") else None,
        Timings(*timings_of(reply)) if reply.HasField("timings") else None,
        output_mode(reply.output_mode, request.output_mode),
        len(image),
    )


def infer_request(request: v2.InferRequest) -> lipsync_pb2.InferRequest:
    """The gRPC request of a v2 INFER."""
    message = lipsync_pb2.InferRequest(
        request_id=str(request.request_id),
        model_name=request.model_name,
        frame_id=request.frame_id,
        output_mode=proto_mode(request.output_mode),
        jpeg_quality=request.jpeg_quality,
    )
    if request.audio is not None:
        message.audio.pcm16 = request.audio.pcm16
        message.audio.sample_rate = SAMPLE_RATE
        if request.audio.center_sample is not None:
            message.audio.center_sample = request.audio.center_sample
    return message


async def v2_infer(state: ProxyState, request: v2.InferRequest, started: float) -> bytes:
    """A v2 INFER: its FRAME, or an ERROR with the same request id."""
    reply = _v2_infer(state, request, started)
    if state.tracer is None:
        return await reply
    attributes = spans.frame_attributes(request.model_name, request.frame_id, request.output_mode)
    return await spans.traced(state.tracer, V2_INFER, started, request.traceparent, attributes, reply)


async def _v2_infer(state: ProxyState, request: v2.InferRequest, started: float) -> bytes:
    frame = await _infer(state, V2_INFER, infer_request(request), request.traceparent, started)
    if isinstance(frame, ProxyError):
        return v2.encode_error(request.request_id, frame.code, frame.message)
    reply, image = frame
    try:
        return v2.encode_frame(
            request.request_id,
            reply.frame_id,
            output_mode(reply.output_mode, request.output_mode),
            bounds_of(reply),
            reply.width,
            reply.height,
            timings_of(reply),
            image,
        )
    except struct.error as exc:
        logger.error("cannot encode the backend's frame for request %d: %s", request.request_id, exc)
        return v2.encode_error(request.request_id, "INTERNAL", "the backend sent a frame v2 cannot carry")
