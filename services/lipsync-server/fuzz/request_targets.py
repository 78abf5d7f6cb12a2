"""What the request fuzzer checks: any well-formed protobuf request to any RPC of the server is answered
with a deliberate status, never an unhandled exception, and the admin calls never leave the models root.

`RequestFuzzer` runs the real server (`create_server` with the default engines) in this process on a
loopback port, serving a tiny sprite package from a models root, with admin calls on so that their
path checks are fuzzed too. An input is `[u8 method][body]`: the first byte picks one RPC of
`lipsync.v1.LipSync` or of the seed-compatible service. For a unary RPC the body is the request; for
a streaming one it is a sequence of `[u16 length, little-endian][request]`. Bodies that are not a
valid protobuf encoding of the request type are the gRPC library's business and are skipped.

Accepted outcomes: OK or a status the server raises on purpose (NOT_FOUND, OUT_OF_RANGE,
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, PERMISSION_DENIED, FAILED_PRECONDITION), and
DEADLINE_EXCEEDED for a stream (Speak paces its frames in real time). UNKNOWN (an exception the
servicer did not expect), INTERNAL and anything else fail the check, as does an error inside a
successful reply (InferBatch items, the seed's `success=false` replies) that names one of those.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

# package_factory (the tests' writer of synthetic packages) lives in the tests folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from package_factory import write_native_package  # type: ignore[import-not-found]

from lipsync_protos import optimized_lipsyncsrv_pb2 as seed
from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_server.registry import ModelEntry
from lipsync_server.server import LipsyncServer, create_server, default_deps
from lipsync_server.settings import Settings

MODEL = "tiny"
SEED = "optimized_lipsyncsrv.OptimizedLipSyncService"
#: Deliberate statuses: what the servicers raise for a request they refuse.
ACCEPTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
ACCEPTED_NAMES = frozenset(code.name for code in ACCEPTED)
ACCEPTED_NUMBERS = frozenset(code.value[0] for code in ACCEPTED)
#: Each call's deadline: a stream that is still speaking by then is cut short, which is fine.
CALL_TIMEOUT_S = 1.0
_LENGTH = struct.Struct("<H")


@dataclass(frozen=True)
class Rpc:
    """One method of the server: its path, request class and whether the client and server stream."""

    path: str
    request: type[Message]
    streaming: bool
    server_streaming: bool = False


# Methods added after the corpus was first written come last, so every earlier input keeps its index.
_LATER = ("GetBaseVideo",)


def _rpcs() -> Sequence[Rpc]:
    found, later = [], []
    for module, name in ((pb, "LipSync"), (seed, "OptimizedLipSyncService")):
        service = module.DESCRIPTOR.services_by_name[name]
        method: MethodDescriptor
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)
            rpc = Rpc(
                f"/{service.full_name}/{method.name}",
                request,
                method.client_streaming,
                method.server_streaming,
            )
            (later if method.name in _LATER else found).append(rpc)
    return tuple(found + later)


RPCS = _rpcs()


def split_stream(body: bytes) -> Iterator[bytes]:
    """The requests of a streaming input: `[u16 length][bytes]` after one another; a short tail ends it."""
    offset = 0
    while offset + _LENGTH.size <= len(body):
        (size,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        yield body[offset : offset + size]
        offset += size


def join_stream(messages: Sequence[Message]) -> bytes:
    """The streaming input body that `split_stream` splits into `messages`."""
    return b"".join(_LENGTH.pack(len(data)) + data for data in (m.SerializeToString() for m in messages))


class RequestFuzzer:
    """A real server in this process, and a channel to it."""

    def __init__(self, workdir: Path) -> None:
        self.models_root = workdir / "models"
        write_native_package(
            self.models_root / MODEL, name=MODEL, frames="png", frame_count=6, width=96, height=72
        )
        settings = replace(
            Settings(),
            host="127.0.0.1",
            port=0,
            models_dir=self.models_root,
            cache_dir=workdir / "cache",
            metrics_port=0,
            admin=True,
            workers=2,
            max_queue=32,
            grace_period_s=0.0,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzzed-server", daemon=True)
        self._thread.start()
        self.server: LipsyncServer = self._run(self._start(settings))
        self._model: ModelEntry = self.server.registry.entry(MODEL)
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _start(self, settings: Settings) -> LipsyncServer:
        server = create_server(settings, default_deps("cpu"))
        await server.start()
        await server.load_models()
        assert server.registry.ready_names() == [MODEL], server.registry.entries()
        return server

    def check(self, data: bytes) -> None:
        """Send the request(s) `data` describes; fail unless the server answers deliberately."""
        if not data:
            return
        rpc = RPCS[data[0] % len(RPCS)]
        try:
            if rpc.streaming:
                requests = [rpc.request.FromString(item) for item in split_stream(data[1:])]
            else:
                requests = [rpc.request.FromString(data[1:])]
        except DecodeError:
            return  # not a request of this type: refused by the gRPC layer before the servicer
        try:
            self._call(rpc, requests)
        finally:
            self._reset()

    def _call(self, rpc: Rpc, requests: list[Message]) -> None:
        raw: Callable[[bytes], bytes] = bytes
        try:
            if rpc.streaming:
                call = self._channel.stream_stream(
                    rpc.path, request_serializer=raw, response_deserializer=raw
                )
                replies = list(call(iter([m.SerializeToString() for m in requests]), timeout=CALL_TIMEOUT_S))
            elif rpc.server_streaming:
                pieces = self._channel.unary_stream(
                    rpc.path, request_serializer=raw, response_deserializer=raw
                )
                replies = list(pieces(requests[0].SerializeToString(), timeout=CALL_TIMEOUT_S))
            else:
                unary = self._channel.unary_unary(rpc.path, request_serializer=raw, response_deserializer=raw)
                replies = [unary(requests[0].SerializeToString(), timeout=CALL_TIMEOUT_S)]
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            details = error.details() or ""
        else:
            code, details = grpc.StatusCode.OK, ""
        deadline = rpc.streaming and code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert code in ACCEPTED or deadline, f"{rpc.path}: {code.name}: {details}"
        if code is not grpc.StatusCode.OK:
            return
        for reply in replies:
            check_reply(rpc.path, reply)
        if rpc.path.endswith(("/LoadModel", "/LoadPackage")):
            for entry in self.server.registry.entries():
                assert entry.source.resolve().is_relative_to(self.models_root.resolve()), entry.source

    def _reset(self) -> None:
        """Back to one ready model, whatever the input loaded or unloaded."""
        registry = self.server.registry
        for entry in registry.entries():
            if entry.name != MODEL:
                registry.remove(entry.name)
        registry.set(self._model)

    def close(self) -> None:
        self._channel.close()
        self._run(self.server.stop(0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


def check_reply(path: str, reply: bytes) -> None:
    """Errors carried inside successful replies must be deliberate ones too."""
    method = path.rsplit("/", 1)[1]
    if path.startswith("/lipsync.v1."):
        if method == "InferBatch":
            for item in pb.InferBatchResponse.FromString(reply).responses:
                assert not item.HasField("error") or item.error.code in ACCEPTED_NUMBERS, item.error
        elif method in ("Infer", "StreamInfer"):
            item = pb.InferResponse.FromString(reply)
            assert not item.HasField("error") or item.error.code in ACCEPTED_NUMBERS, item.error
        elif method == "Speak":
            frame = pb.SpeakResponse.FromString(reply).frame
            assert not frame.HasField("error") or frame.error.code in ACCEPTED_NUMBERS, frame.error
        return
    errors: list[str] = []
    if method in ("GenerateInference", "StreamInference"):
        errors = [seed.OptimizedInferenceResponse.FromString(reply).error]
    elif method in ("GenerateBatchInference", "GenerateBatchWithAudio"):
        errors = [item.error for item in seed.BatchInferenceResponse.FromString(reply).responses]
    elif method == "LoadPackage":
        errors = [seed.LoadPackageResponse.FromString(reply).error]
    elif method in ("GetVideoFrame", "GetModelMetadata"):
        errors = [getattr(seed, f"{method}Response").FromString(reply).error]
    for error in errors:
        assert not error or error.split(":", 1)[0] in ACCEPTED_NAMES, error


def seed_inputs() -> dict[str, bytes]:
    """A valid input for every RPC, named `SERVICE.METHOD`: the fuzzer's seed corpus."""
    infer = pb.InferRequest(model_name=MODEL, frame_id=1, output_mode=pb.OUTPUT_MODE_FACE_CROP)
    audio = pb.AudioWindow(pcm16=bytes(640), sample_rate=16000, center_sample=160)
    speak = [
        pb.SpeakRequest(start=pb.SpeakStart(model_name=MODEL, start_frame_id=0, sample_rate=16000)),
        pb.SpeakRequest(audio=bytes(1280)),
        pb.SpeakRequest(control=pb.SpeakControl(action=pb.SpeakControl.ACTION_END)),
    ]
    with_audio = seed.BatchInferenceWithAudioRequest(
        model_name=MODEL, start_frame_id=0, frame_count=1, audio_chunks=[bytes(1280)] * 16
    )
    requests: dict[str, list[Message]] = {
        "lipsync.v1.LipSync/ListModels": [pb.ListModelsRequest()],
        "lipsync.v1.LipSync/GetModelMetadata": [pb.GetModelMetadataRequest(model_name=MODEL)],
        "lipsync.v1.LipSync/GetVideoFrame": [pb.GetVideoFrameRequest(model_name=MODEL, frame_id=2)],
        "lipsync.v1.LipSync/GetModelAudio": [pb.GetModelAudioRequest(model_name=MODEL)],
        "lipsync.v1.LipSync/GetBaseVideo": [
            pb.GetBaseVideoRequest(model_name=MODEL, codec=pb.VIDEO_CODEC_H264)
        ],
        "lipsync.v1.LipSync/Infer": [pb.InferRequest(model_name=MODEL, frame_id=3, audio=audio)],
        "lipsync.v1.LipSync/InferBatch": [pb.InferBatchRequest(requests=[infer, infer])],
        "lipsync.v1.LipSync/StreamInfer": [infer, infer],
        "lipsync.v1.LipSync/Speak": list(speak),
        "lipsync.v1.LipSync/LoadModel": [pb.LoadModelRequest(path=MODEL, name="copy")],
        "lipsync.v1.LipSync/UnloadModel": [pb.UnloadModelRequest(model_name=MODEL)],
        f"{SEED}/GenerateInference": [seed.OptimizedInferenceRequest(model_name=MODEL, frame_id=4)],
        f"{SEED}/GenerateBatchInference": [seed.BatchInferenceRequest(model_name=MODEL, frame_ids=[0, 5])],
        f"{SEED}/GenerateBatchWithAudio": [with_audio],
        f"{SEED}/StreamInference": [seed.OptimizedInferenceRequest(model_name=MODEL, frame_id=1)],
        f"{SEED}/LoadPackage": [seed.LoadPackageRequest(package_name="again", package_dir=MODEL)],
        f"{SEED}/GetStats": [seed.StatsRequest(model_name=MODEL)],
        f"{SEED}/ListModels": [seed.ListModelsRequest()],
        f"{SEED}/HealthCheck": [seed.HealthRequest()],
        f"{SEED}/GetVideoFrame": [seed.GetVideoFrameRequest(model_name=MODEL, frame_id=1)],
        f"{SEED}/GetModelMetadata": [seed.GetModelMetadataRequest(model_name=MODEL)],
    }
    paths = [rpc.path for rpc in RPCS]
    assert sorted(f"/{name}" for name in requests) == sorted(paths), "a seed for every RPC"
    inputs = {}
    for name, messages in requests.items():
        index = paths.index(f"/{name}")
        body = join_stream(messages) if RPCS[index].streaming else messages[0].SerializeToString()
        inputs[name] = bytes((index,)) + body
    return inputs
