from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutputMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_MODE_UNSPECIFIED: _ClassVar[OutputMode]
    OUTPUT_MODE_FULL_FRAME: _ClassVar[OutputMode]
    OUTPUT_MODE_FACE_CROP: _ClassVar[OutputMode]

class VideoCodec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_CODEC_UNSPECIFIED: _ClassVar[VideoCodec]
    VIDEO_CODEC_H264: _ClassVar[VideoCodec]
    VIDEO_CODEC_VP8: _ClassVar[VideoCodec]
    VIDEO_CODEC_VP9: _ClassVar[VideoCodec]
    VIDEO_CODEC_AV1: _ClassVar[VideoCodec]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
OUTPUT_MODE_UNSPECIFIED: OutputMode
OUTPUT_MODE_FULL_FRAME: OutputMode
OUTPUT_MODE_FACE_CROP: OutputMode
VIDEO_CODEC_UNSPECIFIED: VideoCodec
VIDEO_CODEC_H264: VideoCodec
VIDEO_CODEC_VP8: VideoCodec
VIDEO_CODEC_VP9: VideoCodec
VIDEO_CODEC_AV1: VideoCodec
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState

class Bounds(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: int
    y1: int
    x2: int
    y2: int
    def __init__(self, x1: _Optional[int] = ..., y1: _Optional[int] = ..., x2: _Optional[int] = ..., y2: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "audio_features_ms", "inference_ms", "composite_ms", "encode_ms", "total_ms", "batch_size")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FEATURES_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPOSITE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    audio_features_ms: float
    inference_ms: float
    composite_ms: float
    encode_ms: float
    total_ms: float
    batch_size: int
    def __init__(self, queue_ms: _Optional[float] = ..., audio_features_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., composite_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class AudioWindow(_message.Message):
    __slots__ = ("pcm16", "sample_rate", "center_sample")
    PCM16_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CENTER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    pcm16: bytes
    sample_rate: int
    center_sample: int
    def __init__(self, pcm16: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., center_sample: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelMetadataRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "engine", "state", "frame_count", "fps", "width", "height", "available_videos", "has_audio", "audio_duration_s", "package_format", "error", "audio_path", "bounds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_VIDEOS_FIELD_NUMBER: _ClassVar[int]
    HAS_AUDIO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PATH_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    engine: str
    state: ModelState
    frame_count: int
    fps: float
    width: int
    height: int
    available_videos: _containers.RepeatedScalarFieldContainer[str]
    has_audio: bool
    audio_duration_s: float
    package_format: str
    error: str
    audio_path: str
    bounds: Bounds
    def __init__(self, name: _Optional[str] = ..., engine: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., frame_count: _Optional[int] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., available_videos: _Optional[_Iterable[str]] = ..., has_audio: _Optional[bool] = ..., audio_duration_s: _Optional[float] = ..., package_format: _Optional[str] = ..., error: _Optional[str] = ..., audio_path: _Optional[str] = ..., bounds: _Optional[_Union[Bounds, _Mapping]] = ...) -> None: ...

class GetVideoFrameRequest(_message.Message):
    __slots__ = ("model_name", "frame_id", "jpeg_quality")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    frame_id: int
    jpeg_quality: int
    def __init__(self, model_name: _Optional[str] = ..., frame_id: _Optional[int] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class GetVideoFrameResponse(_message.Message):
    __slots__ = ("model_name", "frame_id", "image", "width", "height")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    frame_id: int
    image: bytes
    width: int
    height: int
    def __init__(self, model_name: _Optional[str] = ..., frame_id: _Optional[int] = ..., image: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class GetModelAudioRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class GetModelAudioResponse(_message.Message):
    __slots__ = ("model_name", "wav", "sample_rate", "duration_s")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    WAV_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    wav: bytes
    sample_rate: int
    duration_s: float
    def __init__(self, model_name: _Optional[str] = ..., wav: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., duration_s: _Optional[float] = ...) -> None: ...

class GetBaseVideoRequest(_message.Message):
    __slots__ = ("model_name", "codec", "if_none_match")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    codec: VideoCodec
    if_none_match: str
    def __init__(self, model_name: _Optional[str] = ..., codec: _Optional[_Union[VideoCodec, str]] = ..., if_none_match: _Optional[str] = ...) -> None: ...

class GetBaseVideoResponse(_message.Message):
    __slots__ = ("data", "etag", "size", "not_modified")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    etag: str
    size: int
    not_modified: bool
    def __init__(self, data: _Optional[bytes] = ..., etag: _Optional[str] = ..., size: _Optional[int] = ..., not_modified: _Optional[bool] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("request_id", "model_name", "frame_id", "output_mode", "audio", "jpeg_quality")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MODE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model_name: str
    frame_id: int
    output_mode: OutputMode
    audio: AudioWindow
    jpeg_quality: int
    def __init__(self, request_id: _Optional[str] = ..., model_name: _Optional[str] = ..., frame_id: _Optional[int] = ..., output_mode: _Optional[_Union[OutputMode, str]] = ..., audio: _Optional[_Union[AudioWindow, _Mapping]] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("request_id", "model_name", "frame_id", "output_mode", "image", "width", "height", "bounds", "timings", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MODE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model_name: str
    frame_id: int
    output_mode: OutputMode
    image: bytes
    width: int
    height: int
    bounds: Bounds
    timings: Timings
    error: Error
    def __init__(self, request_id: _Optional[str] = ..., model_name: _Optional[str] = ..., frame_id: _Optional[int] = ..., output_mode: _Optional[_Union[OutputMode, str]] = ..., image: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., bounds: _Optional[_Union[Bounds, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class InferBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[InferRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[InferRequest, _Mapping]]] = ...) -> None: ...

class InferBatchResponse(_message.Message):
    __slots__ = ("responses", "total_ms")
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[InferResponse]
    total_ms: float
    def __init__(self, responses: _Optional[_Iterable[_Union[InferResponse, _Mapping]]] = ..., total_ms: _Optional[float] = ...) -> None: ...

class SpeakStart(_message.Message):
    __slots__ = ("request_id", "model_name", "output_mode", "start_frame_id", "sample_rate", "jpeg_quality", "video_codecs", "play", "credits")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MODE_FIELD_NUMBER: _ClassVar[int]
    START_FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CODECS_FIELD_NUMBER: _ClassVar[int]
    PLAY_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model_name: str
    output_mode: OutputMode
    start_frame_id: int
    sample_rate: int
    jpeg_quality: int
    video_codecs: _containers.RepeatedScalarFieldContainer[VideoCodec]
    play: bool
    credits: int
    def __init__(self, request_id: _Optional[str] = ..., model_name: _Optional[str] = ..., output_mode: _Optional[_Union[OutputMode, str]] = ..., start_frame_id: _Optional[int] = ..., sample_rate: _Optional[int] = ..., jpeg_quality: _Optional[int] = ..., video_codecs: _Optional[_Iterable[_Union[VideoCodec, str]]] = ..., play: _Optional[bool] = ..., credits: _Optional[int] = ...) -> None: ...

class SpeakControl(_message.Message):
    __slots__ = ("action",)
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[SpeakControl.Action]
        ACTION_INTERRUPT: _ClassVar[SpeakControl.Action]
        ACTION_END: _ClassVar[SpeakControl.Action]
        ACTION_KEY_FRAME: _ClassVar[SpeakControl.Action]
    ACTION_UNSPECIFIED: SpeakControl.Action
    ACTION_INTERRUPT: SpeakControl.Action
    ACTION_END: SpeakControl.Action
    ACTION_KEY_FRAME: SpeakControl.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SpeakControl.Action
    def __init__(self, action: _Optional[_Union[SpeakControl.Action, str]] = ...) -> None: ...

class SpeakRequest(_message.Message):
    __slots__ = ("start", "audio", "control", "credit")
    START_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    start: SpeakStart
    audio: bytes
    control: SpeakControl
    credit: int
    def __init__(self, start: _Optional[_Union[SpeakStart, _Mapping]] = ..., audio: _Optional[bytes] = ..., control: _Optional[_Union[SpeakControl, _Mapping]] = ..., credit: _Optional[int] = ...) -> None: ...

class VideoConfig(_message.Message):
    __slots__ = ("codec", "codec_string", "width", "height", "description")
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CODEC_STRING_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    codec: VideoCodec
    codec_string: str
    width: int
    height: int
    description: bytes
    def __init__(self, codec: _Optional[_Union[VideoCodec, str]] = ..., codec_string: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., description: _Optional[bytes] = ...) -> None: ...

class VideoChunk(_message.Message):
    __slots__ = ("frame_id", "key_frame", "bounds", "data", "timings")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FRAME_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    key_frame: bool
    bounds: Bounds
    data: bytes
    timings: Timings
    def __init__(self, frame_id: _Optional[int] = ..., key_frame: _Optional[bool] = ..., bounds: _Optional[_Union[Bounds, _Mapping]] = ..., data: _Optional[bytes] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class SpeakResponse(_message.Message):
    __slots__ = ("sequence", "audio_time_ms", "frame", "end_of_utterance", "video_config", "video_chunk")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    END_OF_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CONFIG_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CHUNK_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    audio_time_ms: float
    frame: InferResponse
    end_of_utterance: bool
    video_config: VideoConfig
    video_chunk: VideoChunk
    def __init__(self, sequence: _Optional[int] = ..., audio_time_ms: _Optional[float] = ..., frame: _Optional[_Union[InferResponse, _Mapping]] = ..., end_of_utterance: _Optional[bool] = ..., video_config: _Optional[_Union[VideoConfig, _Mapping]] = ..., video_chunk: _Optional[_Union[VideoChunk, _Mapping]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("path", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model", "load_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    load_ms: float
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., load_ms: _Optional[float] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ("unloaded",)
    UNLOADED_FIELD_NUMBER: _ClassVar[int]
    unloaded: bool
    def __init__(self, unloaded: _Optional[bool] = ...) -> None: ...
