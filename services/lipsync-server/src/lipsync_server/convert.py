"""Translation between lipsync.v1 messages and the server's own types."""

from __future__ import annotations

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_server.errors import InvalidArgumentError, LipsyncError
from lipsync_server.registry import ModelEntry, ModelState
from lipsync_server.render import OutputMode, RenderedFrame
from lipsync_server.status import status_for

_MODES: dict[int, OutputMode] = {
    pb.OUTPUT_MODE_UNSPECIFIED: OutputMode.FULL_FRAME,
    pb.OUTPUT_MODE_FULL_FRAME: OutputMode.FULL_FRAME,
    pb.OUTPUT_MODE_FACE_CROP: OutputMode.FACE_CROP,
}
_MODE_TO_PB = {
    OutputMode.FULL_FRAME: pb.OUTPUT_MODE_FULL_FRAME,
    OutputMode.FACE_CROP: pb.OUTPUT_MODE_FACE_CROP,
}
_STATES = {
    ModelState.LOADING: pb.MODEL_STATE_LOADING,
    ModelState.READY: pb.MODEL_STATE_READY,
    ModelState.FAILED: pb.MODEL_STATE_FAILED,
}


def output_mode(value: int) -> OutputMode:
    try:
        return _MODES[value]
    except KeyError:
        raise InvalidArgumentError(f"output_mode {value} is not a known OutputMode") from None


def model_info(entry: ModelEntry) -> pb.ModelInfo:
    info = pb.ModelInfo(name=entry.name, state=_STATES[entry.state], error=entry.error)
    package = entry.package
    if package is not None:
        info.engine = package.engine
        info.frame_count = package.frame_count
        info.fps = package.fps
        info.width = package.width
        info.height = package.height
        info.available_videos.extend(package.videos)
        info.has_audio = package.audio_path is not None
        info.audio_duration_s = package.audio_duration_s
        info.package_format = package.format
        info.audio_path = package.audio_path.name if package.audio_path is not None else ""
        x1, y1, x2, y2 = (int(v) for v in package.boxes[0])
        info.bounds.CopyFrom(pb.Bounds(x1=x1, y1=y1, x2=x2, y2=y2))
    return info


def infer_response(request: pb.InferRequest, mode: OutputMode, frame: RenderedFrame) -> pb.InferResponse:
    t = frame.timings
    x1, y1, x2, y2 = frame.bounds
    return pb.InferResponse(
        request_id=request.request_id,
        model_name=request.model_name,
        frame_id=request.frame_id,
        output_mode=_MODE_TO_PB[mode],
        image=frame.image,
        width=frame.width,
        height=frame.height,
        bounds=pb.Bounds(x1=x1, y1=y1, x2=x2, y2=y2),
        timings=pb.Timings(
            audio_features_ms=t.audio_features_ms,
            inference_ms=t.inference_ms,
            composite_ms=t.composite_ms,
            encode_ms=t.encode_ms,
            total_ms=t.total_ms,
            batch_size=t.batch_size,
        ),
    )


def error_response(request: pb.InferRequest, error: LipsyncError) -> pb.InferResponse:
    return pb.InferResponse(
        request_id=request.request_id,
        model_name=request.model_name,
        frame_id=request.frame_id,
        error=pb.Error(code=status_for(error).value[0], message=str(error)),
    )
