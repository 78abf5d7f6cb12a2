"""The sink as a child process, as the integration tests use it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from lipsync_otlp_sink.process import SinkProcess
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkProcess]:
    process = SinkProcess().start()
    try:
        process.wait_ready(20)
        yield process
    finally:
        process.stop()


def export(sink: SinkProcess, name: str) -> None:
    span = Span(trace_id=TRACE, span_id=b"\x01" * 8, name=name, kind=Span.SPAN_KIND_SERVER)
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    with grpc.insecure_channel(sink.endpoint.removeprefix("http://")) as channel:
        # The generated stub carries no annotations.
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.Export(request, timeout=5)


def test_spans_exported_to_the_endpoint_come_back_as_records(sink: SinkProcess) -> None:
    export(sink, "Infer")
    spans = sink.wait_for_spans(lambda spans: len(spans) >= 1, 10, trace_id=TRACE.hex())
    (span,) = spans
    assert (span.name, span.kind, span.span_id) == ("Infer", Span.SPAN_KIND_SERVER, "01" * 8)
    assert sink.spans(trace_id="0" * 32) == []


def test_waiting_for_spans_that_never_come_names_those_that_did(sink: SinkProcess) -> None:
    export(sink, "Infer")
    with pytest.raises(TimeoutError, match="'Infer'"):
        sink.wait_for_spans(lambda spans: False, 0.1, trace_id=TRACE.hex())


def test_a_sink_whose_port_is_taken_says_why_it_did_not_start(sink: SinkProcess) -> None:
    second = SinkProcess(otlp_port=sink.otlp_port).start()
    with pytest.raises(RuntimeError, match="exited with 2"):
        second.wait_ready(20)
    assert second.stop() == 2


def test_the_sink_stops_cleanly_on_sigterm() -> None:
    process = SinkProcess().start()
    process.wait_ready(20)
    assert process.stop() == 0
