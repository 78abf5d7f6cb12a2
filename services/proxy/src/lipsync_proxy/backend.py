"""The proxy's gRPC client of the lip-sync backends: one grpc.aio channel, balanced and health-checked.

The channel's service config asks gRPC for `round_robin` over every address of the target and for
client-side health checking (gRFC A17) of `lipsync.v1.LipSync`: each backend is watched on
grpc.health.v1, a backend that is not SERVING or not reachable gets no calls, and one that comes
back gets calls again, without restarting the proxy. The idempotent unary methods are retried on
UNAVAILABLE (a backend that died under a call), within the call's deadline.

Frames go through `lipsync_proxy.dispatch` (streams while quiet, batches under load, on the proxy's
own HTTP/2 connections where it can have them: `lipsync_proxy.backend_connections`) unless their
request is traced. Every call has a deadline (`--timeout`; a speaking session `--session-timeout`).
A failed call raises :class:`lipsync_proxy.errors.BackendError`; a cancelled awaiting task cancels
its call. While tracing is on, the channel's interceptors give the calls made inside a request's span
a client span (`lipsync_proxy.tracing_interceptor`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc
from lipsync_proxy.backend_stats import CHANNEL, AddressStats
from lipsync_proxy.dispatch import FrameDispatcher, Metadata, failure, rpc_error
from lipsync_proxy.errors import BackendError, status_of_number
from lipsync_proxy.http2 import USER_AGENT
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.wire import INFER_METHOD, SERVICE_NAME, InferReply, WireError, decode_infer_response

if TYPE_CHECKING:
    # backend_connections uses this module's channel options.
    from lipsync_proxy.backend_connections import BackendConnections

#: Frames are JPEGs well below this; gRPC's default limit of 4 MiB is too tight for large frames.
MAX_RECEIVE_MESSAGE_BYTES = 64 << 20
# gRPC's default reconnect backoff grows to 120 s; a backend that restarts should be used again within
# about two seconds, and a connection attempt to a dead address every two seconds costs nothing.
RECONNECT_BACKOFF_MS = (200, 2000)
# gRPC looks a `dns:` name up again when a connection ends (a backend gone, or one ageing out its
# connections), at most this often (default 30 s): a replica that starts is then used within seconds.
DNS_MIN_INTERVAL_MS = 2000


def service_config() -> str:
    """The channel's service config: round_robin, health checking, retries of idempotent calls."""
    idempotent = ["ListModels", "GetModelMetadata", "GetVideoFrame", "GetModelAudio", "Infer", "InferBatch"]
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "healthCheckConfig": {"serviceName": SERVICE_NAME},
            "methodConfig": [
                {
                    "name": [{"service": SERVICE_NAME, "method": method} for method in idempotent],
                    "retryPolicy": {
                        "maxAttempts": 3,
                        "initialBackoff": "0.01s",
                        "maxBackoff": "0.1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def channel_options(balanced: bool) -> list[tuple[str, Any]]:
    """Options of the proxy's channels; `balanced` adds the service config of the call channel."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
        ("grpc.dns_min_time_between_resolutions_ms", DNS_MIN_INTERVAL_MS),
        ("grpc.primary_user_agent", USER_AGENT),
    ]
    if balanced:
        options += [("grpc.service_config", service_config()), ("grpc.enable_retries", 1)]
    return options


def untraced() -> Metadata:
    """Metadata asking the server not to trace a call: a W3C `traceparent` of a fresh trace whose
    sampled flag is off, which a server sampling by its parent (the OpenTelemetry default) follows."""
    return (("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"),)


class BackendClient:
    """Calls to the backends behind one channel target (see `lipsync_proxy.targets`)."""

    def __init__(
        self,
        target: str,
        timeout_s: float,
        session_timeout_s: float,
        metrics: Metrics,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        streams: int = 0,
        max_batch: int = 1,
        connections: BackendConnections | None = None,
    ) -> None:
        """`connections`: the proxy's own HTTP/2 connections that frame batches take when they can."""
        self.target = target
        #: Frames per backend address and their failures, for /health.
        self.stats = AddressStats()
        self.timeout_s = timeout_s
        self.session_timeout_s = session_timeout_s
        self.channel = grpc.aio.insecure_channel(
            target, options=channel_options(balanced=True), interceptors=list(interceptors)
        )
        self._stub = lipsync_pb2_grpc.LipSyncStub(self.channel)
        # Bytes in, bytes out: the frame path builds and reads the messages itself (see wire.py).
        self._infer_raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            INFER_METHOD
        )
        self._dispatcher = FrameDispatcher(
            self.channel,
            timeout_s,
            streams,
            max_batch,
            metadata=untraced,
            record=metrics.record_frames,
            connections=connections,
            stats=self.stats,
        )
        self._connections = connections
        self._record = metrics.record_frames
        self._latency = metrics.grpc_latency

    async def infer(
        self, request: bytes, metadata: Metadata | None = None, traced: bool = False
    ) -> InferReply:
        """The reply to one serialized `InferRequest`; raises BackendError, the frame's own error too.

        A traced frame (`traced`: the caller's span is recorded) or one whose `metadata` carries the
        client's trace context gets a unary call of its own, made in the caller's context so that the
        call and the server's spans join its trace. Every other frame goes through the dispatcher."""
        if traced or metadata is not None:
            started = time.perf_counter()
            try:
                reply: bytes = await self._infer_raw(request, timeout=self.timeout_s, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                self.stats.record(CHANNEL, 1, True)
                raise rpc_error(exc) from None
            finally:
                self._record("Infer", 1, time.perf_counter() - started)
            self.stats.record(CHANNEL, 1, False)
        else:
            reply = await self._dispatcher.infer(request)
        return self.decode(reply)

    def submit(self, request: bytes) -> asyncio.Future[bytes]:
        """The future of the serialized `InferResponse` of one serialized `InferRequest`, sent through
        the dispatcher (BackendError when the call carrying it fails; `decode` it). Cancelling the
        future gives the frame up."""
        return self._dispatcher.submit(request)

    @staticmethod
    def decode(reply: bytes) -> InferReply:
        """The fields of a frame's serialized `InferResponse`; raises BackendError when it is
        malformed, has no image, or is the frame's own error."""
        try:
            decoded = decode_infer_response(reply)
        except WireError as exc:
            raise BackendError(grpc.StatusCode.INTERNAL, f"malformed InferResponse: {exc}") from None
        if decoded.error is not None:
            code, message = decoded.error
            raise failure(status_of_number(code), message)
        if not decoded.image:
            raise BackendError(grpc.StatusCode.INTERNAL, "the backend returned no image")
        return decoded

    def rebalance(self) -> None:
        """A backend's health changed: frames stop going to backends by streams opened before."""
        self._dispatcher.retire_lanes()

    async def list_models(self, *, probe: bool = False) -> list[lipsync_pb2.ModelInfo]:
        """The models of one backend (round_robin picks which); raises BackendError. A `probe` (the
        health monitor's periodic refresh) asks the server not to trace it."""
        with self._latency.time(("ListModels",)):
            try:
                reply = await self._stub.ListModels(
                    lipsync_pb2.ListModelsRequest(),
                    timeout=self.timeout_s,
                    metadata=untraced() if probe else None,
                )
            except grpc.aio.AioRpcError as exc:
                raise rpc_error(exc) from None
        return list(reply.models)

    async def model_info(self, model_name: str) -> lipsync_pb2.ModelInfo:
        """One model's metadata; raises BackendError (NOT_FOUND for an unknown model)."""
        with self._latency.time(("GetModelMetadata",)):
            try:
                info: lipsync_pb2.ModelInfo = await self._stub.GetModelMetadata(
                    lipsync_pb2.GetModelMetadataRequest(model_name=model_name), timeout=self.timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                raise rpc_error(exc) from None
        return info

    async def video_frame(self, model_name: str, frame_id: int) -> lipsync_pb2.GetVideoFrameResponse:
        """One unmodified base frame; raises BackendError."""
        request = lipsync_pb2.GetVideoFrameRequest(model_name=model_name, frame_id=frame_id)
        with self._latency.time(("GetVideoFrame",)):
            try:
                reply: lipsync_pb2.GetVideoFrameResponse = await self._stub.GetVideoFrame(
                    request, timeout=self.timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                raise rpc_error(exc) from None
        return reply

    async def model_audio(self, model_name: str) -> lipsync_pb2.GetModelAudioResponse:
        """The package's audio track as a WAV file; raises BackendError."""
        request = lipsync_pb2.GetModelAudioRequest(model_name=model_name)
        with self._latency.time(("GetModelAudio",)):
            try:
                reply: lipsync_pb2.GetModelAudioResponse = await self._stub.GetModelAudio(
                    request, timeout=self.timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                raise rpc_error(exc) from None
        return reply

    def speak(
        self, metadata: Metadata | None = None
    ) -> grpc.aio.StreamStreamCall[lipsync_pb2.SpeakRequest, lipsync_pb2.SpeakResponse]:
        """A new `Speak` stream; the caller writes requests and reads frames, and cancels it when done."""
        call: grpc.aio.StreamStreamCall[lipsync_pb2.SpeakRequest, lipsync_pb2.SpeakResponse] = (
            self._stub.Speak(timeout=self.session_timeout_s, metadata=metadata)
        )
        return call

    async def close(self) -> None:
        """Close the channel, cancelling what is still running on it."""
        await self._dispatcher.close()
        if self._connections is not None:
            await self._connections.close()
        await self.channel.close()
