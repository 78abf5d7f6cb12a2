"""The OTLP/gRPC side: `opentelemetry.proto.collector.trace.v1.TraceService/Export` into a store."""

from __future__ import annotations

import logging

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from lipsync_otlp_sink.store import SpanStore, spans_from_request

logger = logging.getLogger(__name__)


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Accepts every export and keeps its spans."""

    def __init__(self, store: SpanStore) -> None:
        self._store = store

    def Export(  # noqa: N802 - the gRPC method name
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        spans = spans_from_request(request)
        self._store.add(spans)
        logger.debug("received %d spans from %s", len(spans), context.peer())
        return ExportTraceServiceResponse()
