"""Prometheus metrics of one server, in a registry of its own (tests run several servers per process)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from lipsync_server.render import RenderedFrame

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


@dataclass
class Outcome:
    """What a tracked call ended with; the servicer sets `code` when it fails."""

    code: grpc.StatusCode = grpc.StatusCode.OK


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "lipsync_server_requests",
            "RPCs finished, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "lipsync_server_request_duration_seconds",
            "RPC duration by method (streams: whole stream)",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        #: RPCs being served (health checks and reflection are not tracked); shutdown waits for them.
        self.active = 0
        self.inflight = Gauge("lipsync_server_inflight_requests", "RPCs being served", registry=r)
        self.inflight.set_function(lambda: self.active)
        self.frames = Counter(
            "lipsync_server_frames",
            "Frames rendered, by model and output mode",
            ["model", "output_mode"],
            registry=r,
        )
        self.stage = Histogram(
            "lipsync_server_stage_duration_seconds",
            "Per-frame time in each stage: audio_features, inference, composite, encode",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "lipsync_server_batch_size", "Frames per engine call", buckets=(1, 2, 4, 8, 16, 32), registry=r
        )
        # A failed item of a batch or stream leaves its call OK: without this, a proxy that batches
        # would hide every refused or bad frame from `requests`.
        self.item_errors = Counter(
            "lipsync_server_item_errors",
            "Items of InferBatch and StreamInfer answered with an Error, not a frame, by method and code",
            ["method", "code"],
            registry=r,
        )
        self.models = Gauge("lipsync_server_models", "Models by state", ["state"], registry=r)
        self.queued = Gauge(
            "lipsync_server_queued_frames", "Frames accepted and not yet rendered", registry=r
        )

    @contextmanager
    def track(self, method: str) -> Iterator[Outcome]:
        outcome = Outcome()
        start = time.perf_counter()
        self.active += 1
        try:
            yield outcome
        except BaseException:
            if outcome.code is grpc.StatusCode.OK:
                outcome.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self.active -= 1
            self.latency.labels(method).observe(time.perf_counter() - start)
            self.requests.labels(method, outcome.code.name).inc()

    def record_frames(self, model: str, output_mode: str, frames: list[RenderedFrame]) -> None:
        self.frames.labels(model, output_mode).inc(len(frames))
        for frame in frames:
            t = frame.timings
            self.stage.labels("audio_features").observe(t.audio_features_ms / 1000)
            self.stage.labels("inference").observe(t.inference_ms / 1000)
            self.stage.labels("composite").observe(t.composite_ms / 1000)
            self.stage.labels("encode").observe(t.encode_ms / 1000)
        if frames:
            self.batch_size.observe(frames[0].timings.batch_size)

    def serve(self, port: int, host: str) -> int:
        """Serve /metrics on `host`:`port` (0 picks one) in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
