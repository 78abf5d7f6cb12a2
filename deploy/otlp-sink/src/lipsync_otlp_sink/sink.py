"""The sink: the OTLP receiver and the query API over one span store, built separately from running it."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from lipsync_otlp_sink.query_api import QueryServer
from lipsync_otlp_sink.receiver import TraceReceiver
from lipsync_otlp_sink.store import SpanStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the sink listens and how many spans it keeps. Port 0 picks a free port."""

    host: str = "0.0.0.0"
    otlp_port: int = 4317
    http_port: int = 16686
    max_spans: int = 100_000


class Sink:
    """Both endpoints, bound to their ports; `start` serves, `stop` ends both."""

    def __init__(self, settings: Settings, store: SpanStore) -> None:
        self.store = store
        # grpc enables SO_REUSEPORT by default: a second sink would share the port and half the spans.
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)]
        )
        # The generated registration function carries no annotations.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            TraceReceiver(store), self._grpc
        )
        address = f"{settings.host}:{settings.otlp_port}"
        try:
            self.otlp_port = self._grpc.add_insecure_port(address)
        except RuntimeError as exc:  # grpc's way of saying the bind failed
            raise OSError(f"cannot listen for OTLP on {address}: address in use or invalid") from exc
        self._http = QueryServer((settings.host, settings.http_port), store)
        self.http_port = self._http.port
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="query-api", daemon=True)

    def start(self) -> None:
        """Serve OTLP and the query API in background threads."""
        self._grpc.start()
        self._http_thread.start()
        logger.info("OTLP/gRPC on port %d, queries on port %d", self.otlp_port, self.http_port)

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop both endpoints; exports in progress get `grace_s` seconds to finish."""
        self._grpc.stop(grace_s).wait()
        if self._http_thread.is_alive():
            self._http.shutdown()
        self._http.server_close()


def create_sink(settings: Settings, store: SpanStore | None = None) -> Sink:
    """A sink bound to the settings' ports, keeping spans in `store` (a new one when not given)."""
    return Sink(settings, store if store is not None else SpanStore(settings.max_spans))
