"""Spans received over OTLP, flattened into plain records, and the bounded store that keeps them.

Pure: no sockets here. The receiver feeds `spans_from_request` into a `SpanStore`; the HTTP query
side reads it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

AttributeValue = str | bool | int | float
UNKNOWN_SERVICE = "unknown_service"


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One received span. Ids are lowercase hex (32 digits for traces, 16 for spans); a root span's
    `parent_span_id` is empty. Attributes keep scalar values only; others are rendered as text."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: int
    start_unix_nano: int
    end_unix_nano: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The record as a JSON-ready mapping."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "service": self.service,
            "kind": self.kind,
            "start_unix_nano": self.start_unix_nano,
            "end_unix_nano": self.end_unix_nano,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpanRecord:
        """The record `to_json` gave (as the query API sends it)."""
        return cls(
            trace_id=str(data["trace_id"]),
            span_id=str(data["span_id"]),
            parent_span_id=str(data["parent_span_id"]),
            name=str(data["name"]),
            service=str(data["service"]),
            kind=int(data["kind"]),
            start_unix_nano=int(data["start_unix_nano"]),
            end_unix_nano=int(data["end_unix_nano"]),
            attributes=dict(data["attributes"]),
        )


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """What the store knows about one trace: its services (sorted) and how many spans it has."""

    trace_id: str
    services: tuple[str, ...]
    span_count: int

    def to_json(self) -> dict[str, object]:
        """The summary as a JSON-ready mapping."""
        return {"trace_id": self.trace_id, "services": list(self.services), "span_count": self.span_count}


def _attribute_value(value: AnyValue) -> AttributeValue:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    # Arrays, maps and bytes are rare in these traces; text is enough to look at them.
    return str(value).strip()


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, AttributeValue]:
    return {pair.key: _attribute_value(pair.value) for pair in pairs}


def spans_from_request(request: ExportTraceServiceRequest) -> list[SpanRecord]:
    """Flatten an OTLP export request into span records, each tagged with its resource's
    `service.name` (`unknown_service` when the resource has none)."""
    records: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name", UNKNOWN_SERVICE)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        service=str(service),
                        kind=int(span.kind),
                        start_unix_nano=span.start_time_unix_nano,
                        end_unix_nano=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                    )
                )
    return records


class SpanStore:
    """The most recent `max_spans` spans, oldest dropped first. Safe to use from several threads: the
    gRPC receiver adds while the HTTP side reads."""

    def __init__(self, max_spans: int) -> None:
        if max_spans < 1:
            raise ValueError(f"max_spans must be at least 1, got {max_spans}")
        self._spans: deque[SpanRecord] = deque(maxlen=max_spans)
        self._lock = threading.Lock()

    def add(self, spans: Iterable[SpanRecord]) -> None:
        """Keep these spans, dropping the oldest ones beyond the limit."""
        with self._lock:
            self._spans.extend(spans)

    def spans(self, *, trace_id: str | None = None, service: str | None = None) -> list[SpanRecord]:
        """Spans in the order received, optionally only those of one trace and/or one service."""
        with self._lock:
            snapshot = list(self._spans)
        return [
            span
            for span in snapshot
            if (trace_id is None or span.trace_id == trace_id)
            and (service is None or span.service == service)
        ]

    def traces(self) -> list[TraceSummary]:
        """One summary per trace, in the order each trace's first span was received."""
        services: dict[str, set[str]] = {}
        counts: dict[str, int] = {}
        for span in self.spans():
            services.setdefault(span.trace_id, set()).add(span.service)
            counts[span.trace_id] = counts.get(span.trace_id, 0) + 1
        return [
            TraceSummary(trace_id=trace_id, services=tuple(sorted(names)), span_count=counts[trace_id])
            for trace_id, names in services.items()
        ]
