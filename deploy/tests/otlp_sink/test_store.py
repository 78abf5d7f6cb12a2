"""The span store and the flattening of OTLP export requests."""

from __future__ import annotations

import pytest
from lipsync_otlp_sink.store import UNKNOWN_SERVICE, SpanRecord, SpanStore, spans_from_request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span


def export_request(service: str | None, *spans: Span) -> ExportTraceServiceRequest:
    attributes = (
        [] if service is None else [KeyValue(key="service.name", value=AnyValue(string_value=service))]
    )
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=attributes), scope_spans=[ScopeSpans(spans=list(spans))]
            )
        ]
    )


def span(trace: int, span_id: int, parent: int | None = None, name: str = "op") -> Span:
    return Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        name=name,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_000,
        end_time_unix_nano=2_000,
        attributes=[
            KeyValue(key="lipsync.frame_id", value=AnyValue(int_value=50)),
            KeyValue(key="lipsync.model", value=AnyValue(string_value="demo")),
            KeyValue(key="lipsync.cached", value=AnyValue(bool_value=True)),
            KeyValue(key="lipsync.ms", value=AnyValue(double_value=1.5)),
            KeyValue(
                key="lipsync.list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))
            ),
        ],
    )


def record(trace: str, service: str) -> SpanRecord:
    return SpanRecord(
        trace_id=trace,
        span_id="01",
        parent_span_id="",
        name="op",
        service=service,
        kind=2,
        start_unix_nano=0,
        end_unix_nano=1,
    )


def test_a_request_is_flattened_into_records_with_hex_ids_and_its_service() -> None:
    (child,) = spans_from_request(
        export_request("lipsync-server", span(0xABC, 0x2, parent=0x1, name="Infer"))
    )
    assert child.trace_id == f"{0xABC:032x}"
    assert child.span_id == f"{0x2:016x}"
    assert child.parent_span_id == f"{0x1:016x}"
    assert child.name == "Infer"
    assert child.service == "lipsync-server"
    assert child.kind == Span.SPAN_KIND_SERVER
    assert (child.start_unix_nano, child.end_unix_nano) == (1_000, 2_000)


def test_scalar_attributes_keep_their_types_and_others_become_text() -> None:
    (only,) = spans_from_request(export_request("svc", span(1, 1)))
    assert only.attributes["lipsync.frame_id"] == 50
    assert only.attributes["lipsync.model"] == "demo"
    assert only.attributes["lipsync.cached"] is True
    assert only.attributes["lipsync.ms"] == 1.5
    assert isinstance(only.attributes["lipsync.list"], str)
    assert "int_value: 1" in str(only.attributes["lipsync.list"])


def test_a_root_span_has_no_parent_and_a_resource_without_a_name_is_unknown() -> None:
    (root,) = spans_from_request(export_request(None, span(1, 1)))
    assert root.parent_span_id == ""
    assert root.service == UNKNOWN_SERVICE


def test_the_store_keeps_only_the_newest_spans() -> None:
    store = SpanStore(max_spans=2)
    store.add([record("a", "s"), record("b", "s"), record("c", "s")])
    assert [s.trace_id for s in store.spans()] == ["b", "c"]


def test_spans_can_be_filtered_by_trace_and_by_service() -> None:
    store = SpanStore(max_spans=10)
    store.add([record("t1", "proxy"), record("t1", "server"), record("t2", "server")])
    assert [(s.trace_id, s.service) for s in store.spans(trace_id="t1")] == [
        ("t1", "proxy"),
        ("t1", "server"),
    ]
    assert [s.trace_id for s in store.spans(service="server")] == ["t1", "t2"]
    assert [s.service for s in store.spans(trace_id="t2", service="proxy")] == []


def test_traces_are_summarised_in_the_order_they_first_arrived() -> None:
    store = SpanStore(max_spans=10)
    store.add([record("t2", "server"), record("t1", "proxy"), record("t2", "proxy"), record("t2", "server")])
    summaries = [s.to_json() for s in store.traces()]
    assert summaries == [
        {"trace_id": "t2", "services": ["proxy", "server"], "span_count": 3},
        {"trace_id": "t1", "services": ["proxy"], "span_count": 1},
    ]


def test_a_store_must_keep_at_least_one_span() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SpanStore(max_spans=0)


def test_a_record_read_back_from_its_json_is_the_same_record() -> None:
    (original,) = spans_from_request(export_request("lipsync-server", span(0xABC, 0x2, parent=0x1)))
    assert SpanRecord.from_json(original.to_json()) == original
