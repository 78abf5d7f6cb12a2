"""What every connection of one proxy shares: settings, the backend client, metrics, the tracer and the
global cap."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field

from opentelemetry.trace import Tracer

from lipsync_proxy.backend import BackendClient
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.rate_limit import ClientLimits
from lipsync_proxy.settings import Settings

# Whether the global cap admitted the request the current task serves. It is decided when the request
# is read, in read order, and the request's task inherits it with its context: decided when the task
# ran instead, every request of a burst larger than the cap counted the others and all were refused
# while the backend sat idle (found by the fault suite).
_admitted: ContextVar[bool] = ContextVar("lipsync_proxy_admitted", default=True)


@dataclass(eq=False)
class ProxyState:
    """Shared by the connections of one proxy; `inflight` counts requests of all of them."""

    settings: Settings
    backend: BackendClient
    metrics: Metrics
    #: The tracer of the request and session spans; None while tracing is off.
    tracer: Tracer | None = None
    inflight: int = 0
    #: Requests read since the start.
    requests: int = 0
    sessions: int = 0
    draining: bool = False
    #: Whether the per-frame log line is written; decided once so that frames pay nothing when it is off.
    log_frames: bool = field(init=False)
    #: The rate limits and the connections of each client address.
    limits: ClientLimits = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.limits = ClientLimits(
            settings.rate_limit, settings.address_rate_limit, settings.max_connections_per_address
        )
        self.log_frames = not self.settings.quiet_frames and logging.getLogger(
            "lipsync_proxy.mapping"
        ).isEnabledFor(logging.INFO)

    def admit(self) -> None:
        """Count a request that was just read, and decide whether the global cap admits it: the task
        created next for it (which copies the current context) sees the decision as `overloaded`."""
        _admitted.set(self.inflight < self.settings.max_inflight_total)
        self.inflight += 1
        self.requests += 1

    @property
    def overloaded(self) -> bool:
        """True when the request the current task serves was refused by the global cap (see `admit`)."""
        return not _admitted.get()
