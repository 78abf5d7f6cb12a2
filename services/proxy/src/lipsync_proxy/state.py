"""What every connection of one proxy shares: settings, the backend client, metrics, the tracer and the
global cap."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from opentelemetry.trace import Tracer

from lipsync_proxy.backend import BackendClient
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.settings import Settings


@dataclass(eq=False)
class ProxyState:
    """Shared by the connections of one proxy; `inflight` counts requests of all of them."""

    settings: Settings
    backend: BackendClient
    metrics: Metrics
    #: The tracer of the request and session spans; None while tracing is off.
    tracer: Tracer | None = None
    inflight: int = 0
    sessions: int = 0
    draining: bool = False
    #: Whether the per-frame log line is written; decided once so that frames pay nothing when it is off.
    log_frames: bool = field(init=False)

    def __post_init__(self) -> None:
        self.log_frames = not self.settings.quiet_frames and logging.getLogger(
            "lipsync_proxy.mapping"
        ).isEnabledFor(logging.INFO)

    @property
    def overloaded(self) -> bool:
        """True when more requests are in flight than the global cap allows, counting the request that
        asks (a request is counted from the moment it is read)."""
        return self.inflight > self.settings.max_inflight_total
