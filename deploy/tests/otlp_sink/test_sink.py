"""The sink end to end on loopback: spans exported over OTLP/gRPC come back from the HTTP queries."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from lipsync_otlp_sink.sink import Settings, Sink, create_sink
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = create_sink(Settings(host="127.0.0.1", otlp_port=0, http_port=0, max_spans=100))
    running.start()
    yield running
    running.stop(grace_s=0)


def export(sink: Sink, service: str, *names: str) -> None:
    spans = [Span(trace_id=TRACE, span_id=bytes([i + 1]) * 8, name=name) for i, name in enumerate(names)]
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    with grpc.insecure_channel(f"127.0.0.1:{sink.otlp_port}") as channel:
        # The generated stub carries no annotations.
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.Export(request, timeout=5)


def get(sink: Sink, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.http_port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_both_ports_are_bound_when_the_sink_is_created(sink: Sink) -> None:
    assert sink.otlp_port > 0
    assert sink.http_port > 0
    assert get(sink, "/healthz") == (200, b"ok\n")


def test_exported_spans_are_listed_as_one_trace_with_both_services(sink: Sink) -> None:
    export(sink, "lipsync-proxy", "ws.request")
    export(sink, "lipsync-server", "Infer", "encode")
    status, body = get(sink, "/api/traces")
    assert status == 200
    assert json.loads(body) == {
        "traces": [
            {"trace_id": TRACE.hex(), "services": ["lipsync-proxy", "lipsync-server"], "span_count": 3}
        ],
        "count": 1,
    }


def test_spans_are_queried_by_trace_and_by_service(sink: Sink) -> None:
    export(sink, "lipsync-server", "Infer", "encode")
    status, body = get(sink, f"/api/spans?trace_id={TRACE.hex()}&service=lipsync-server")
    assert status == 200
    reply = json.loads(body)
    assert reply["count"] == 2
    assert [span["name"] for span in reply["spans"]] == ["Infer", "encode"]
    assert json.loads(get(sink, "/api/spans?service=nobody")[1]) == {"spans": [], "count": 0}


def test_an_unknown_path_is_not_found(sink: Sink) -> None:
    assert get(sink, "/api/nothing")[0] == 404


def test_a_sink_on_a_busy_port_fails_to_start(sink: Sink) -> None:
    with pytest.raises(OSError, match="in use"):
        create_sink(Settings(host="127.0.0.1", otlp_port=0, http_port=sink.http_port))
