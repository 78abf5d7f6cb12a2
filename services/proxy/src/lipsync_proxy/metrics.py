"""The proxy's Prometheus metrics, in a registry of their own (one per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Request latencies in seconds: fine steps around a 17 ms frame, coarse up to the 5 s deadline.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The `type` label of a v1 binary frame request (JSON requests use their "type").
V1_FRAME = "v1_frame"
#: Frames per InferBatch call (`lipsync_proxy.dispatch`).
BATCH_BUCKETS = (2, 4, 8, 16, 32, 64)
#: Per session, the share of the frames asked for that were delivered.
DELIVERY_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    """Connections, requests by type and result code, latencies, work in flight, session frames,
    backend health."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "lipsync_proxy_open_connections", "Open WebSocket connections", ["protocol"], registry=r
        )
        self.connections_total = Counter(
            "lipsync_proxy_connections", "WebSocket connections accepted", ["protocol"], registry=r
        )
        self.requests = Counter(
            "lipsync_proxy_requests",
            "Requests answered, by message type and result code (OK or a gRPC status name)",
            ["type", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "lipsync_proxy_request_duration_seconds",
            "Time from reading a request to handing its reply to the WebSocket",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_latency = Histogram(
            "lipsync_proxy_grpc_duration_seconds",
            "Duration of the proxy's gRPC calls to the backends",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Read from the app's own counters at scrape time: nothing to update per request.
        self.inflight = Gauge("lipsync_proxy_inflight_requests", "Requests being worked on", registry=r)
        self.sessions = Gauge("lipsync_proxy_sessions", "Open v2 streaming sessions", registry=r)
        self.session_frames_requested = Counter(
            "lipsync_proxy_session_frames_requested",
            "Frames the audio of v2 sessions asked for: each frame the backend streamed, or its error",
            registry=r,
        )
        self.session_frames_delivered = Counter(
            "lipsync_proxy_session_frames_delivered",
            "Frames of v2 sessions delivered to the client (SESSION_FRAME)",
            registry=r,
        )
        self.session_delivered_ratio = Histogram(
            "lipsync_proxy_session_delivered_ratio",
            "Per v2 session that asked for frames: frames delivered / frames asked for",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.backend_serving = Gauge(
            "lipsync_proxy_backend_serving",
            "1 when the backend's grpc.health.v1 status is SERVING, else 0",
            ["backend"],
            registry=r,
        )
        self.backend_frames = Counter(
            "lipsync_proxy_backend_frames",
            "Frames sent to the backends, by the method that carried them: Infer, InferBatch or "
            "StreamInfer (a stream carrying one frame at a time); a frame whose stream failed counts once, "
            "as the Infer that sent it again",
            ["method"],
            registry=r,
        )
        self.batch_size = Histogram(
            "lipsync_proxy_backend_batch_size",
            "Frames per InferBatch call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )

        self.throttled = Counter(
            "lipsync_proxy_throttled_messages",
            "Messages read late because their connection or client address was over its rate limit",
            registry=r,
        )
        self.refused_connections = Counter(
            "lipsync_proxy_refused_connections",
            "WebSocket connections closed at once (1013): their client address had its maximum open",
            registry=r,
        )

        # The v1 frame path's children, looked up once: labels() takes a lock and a dict lookup per call.
        self.v1_frames_ok = self.requests.labels(V1_FRAME, "OK")
        self.v1_frame_latency = self.latency.labels(V1_FRAME)
        self._frame_calls = {
            method: (self.grpc_latency.labels(method), self.backend_frames.labels(method))
            for method in ("Infer", "InferBatch", "StreamInfer")
        }

    def record_frames(self, method: str, frames: int, seconds: float) -> None:
        """A call (or a stream's exchange) that carried `frames` frames is over after `seconds`."""
        latency, count = self._frame_calls[method]
        latency.observe(seconds)
        count.inc(frames)
        if method == "InferBatch":
            self.batch_size.observe(frames)

    def count_session(self, requested: int, delivered: int) -> None:
        """Count the frames of a session that has ended."""
        self.session_frames_requested.inc(requested)
        self.session_frames_delivered.inc(delivered)
        if requested:
            self.session_delivered_ratio.observe(delivered / requested)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
