"""The proxy's Prometheus metrics, in a registry of their own (one per app, so tests can run several).

The metrics that every frame updates (requests, their latency, the backend calls that carried them)
are `LoopCounter`s and `LoopHistogram`s: plain ints and lists, no lock. prometheus_client locks every
update because it may be updated from any thread; the proxy updates these only from its event loop,
which also serves /metrics, and its locks and checks cost about 1.2 µs per frame plus 2 µs per batch.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: Request latencies in seconds: fine steps around a 17 ms frame, coarse up to the 5 s deadline.
LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1),
    *(0.25, 0.5, 1, 2.5, 5),
)
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The `type` label of a v1 binary frame request (JSON requests use their "type").
V1_FRAME = "v1_frame"
#: The methods that carry frames to the backends (`lipsync_proxy.dispatch`).
FRAME_METHODS = ("Infer", "InferBatch")
#: Frames per InferBatch call.
BATCH_BUCKETS = (2, 4, 8, 16, 32, 64)
#: Per session, the share of the frames asked for that were delivered.
DELIVERY_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


Labels = tuple[str, ...]


class LoopCounter(Collector):
    """A counter by labels, for updates from the event loop only (see the module's docstring)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._values: dict[Labels, float] = {}
        registry.register(self)

    def inc(self, labels: Labels, amount: float = 1) -> None:
        """Add `amount` to the series of `labels` (one value per label name, in order)."""
        self._values[labels] = self._values.get(labels, 0) + amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, value in self._values.items():
            family.add_metric(labels, value)
        yield family


class LoopHistogram(Collector):
    """A histogram by labels, for updates from the event loop only (see the module's docstring)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(bound) for bound in buckets)
        #: Per series: how many values fell in each bucket (not cumulative; the last is +Inf), and
        #: their sum.
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        registry.register(self)

    def observe(self, labels: Labels, value: float) -> None:
        """Count `value` in the series of `labels`."""
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * (len(self._bounds) + 1)
            self._sums[labels] = 0.0
        # A bucket counts the values up to and including its bound.
        counts[bisect_left(self._bounds, value)] += 1
        self._sums[labels] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        bounds = [*map(floatToGoString, self._bounds), "+Inf"]
        for labels, counts in self._counts.items():
            cumulative = [float(total) for total in itertools.accumulate(counts)]
            family.add_metric(labels, list(zip(bounds, cumulative, strict=True)), self._sums[labels])
        yield family


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
        self.requests = LoopCounter(
            "lipsync_proxy_requests",
            "Requests answered, by message type and result code (OK or a gRPC status name)",
            ["type", "code"],
            r,
        )
        self.latency = LoopHistogram(
            "lipsync_proxy_request_duration_seconds",
            "Time from reading a request to handing its reply to the WebSocket",
            ["type"],
            LATENCY_BUCKETS,
            r,
        )
        self.grpc_latency = LoopHistogram(
            "lipsync_proxy_grpc_duration_seconds",
            "Duration of the proxy's gRPC calls to the backends",
            ["method"],
            LATENCY_BUCKETS,
            r,
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
        self.backend_frames = LoopCounter(
            "lipsync_proxy_backend_frames",
            "Frames sent to the backends, by the method that carried them: Infer or InferBatch; a frame "
            "sent again to another backend (the first never took it) counts again",
            ["method"],
            r,
        )
        self.batch_size = LoopHistogram(
            "lipsync_proxy_backend_batch_size", "Frames per InferBatch call", [], BATCH_BUCKETS, r
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

        for method in FRAME_METHODS:
            self.backend_frames.inc((method,), 0)

    def count_request(self, kind: str, code: str, seconds: float) -> None:
        """A request of type `kind` was answered with `code` (OK or a gRPC status name) after `seconds`."""
        self.requests.inc((kind, code))
        self.latency.observe((kind,), seconds)

    def record_frames(self, method: str, frames: int, seconds: float) -> None:
        """A call that carried `frames` frames is over after `seconds`."""
        labels = (method,)
        self.grpc_latency.observe(labels, seconds)
        self.backend_frames.inc(labels, frames)
        if method == "InferBatch":
            self.batch_size.observe((), frames)

    def count_session(self, requested: int, delivered: int) -> None:
        """Count the frames of a session that has ended."""
        self.session_frames_requested.inc(requested)
        self.session_frames_delivered.inc(delivered)
        if requested:
            self.session_delivered_ratio.observe(delivered / requested)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
