"""The proxy's exceptions and the one table from gRPC status codes to the codes its replies carry.

Malformed client input is :class:`lipsync_protocol.errors.ProtocolError` (the protocol core's);
everything else the connection handler answers is a :class:`ProxyError` with a wire code and a message
that is safe to send to the client. The detail behind a message is logged where it is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

import grpc

from lipsync_protocol.errors import GRPC_STATUS_NAMES

logger = logging.getLogger(__name__)

#: The codes a client cannot act on differently, collapsed into one the SPEC's clients handle; every
#: other status keeps its own name in an error reply.
_COLLAPSED: Mapping[grpc.StatusCode, str] = {
    # The server gave up on the call (it is stopping or aborted it): trying again may work.
    grpc.StatusCode.CANCELLED: "UNAVAILABLE",
    grpc.StatusCode.ABORTED: "UNAVAILABLE",
    # The server failed in a way the client cannot fix.
    grpc.StatusCode.UNKNOWN: "INTERNAL",
    grpc.StatusCode.UNIMPLEMENTED: "INTERNAL",
    grpc.StatusCode.DATA_LOSS: "INTERNAL",
    grpc.StatusCode.OK: "INTERNAL",
}
#: The code each gRPC status becomes in an error reply.
WIRE_CODES: Mapping[grpc.StatusCode, str] = MappingProxyType(
    {status: _COLLAPSED.get(status, status.name) for status in grpc.StatusCode}
)

#: What the client reads for the codes whose gRPC details may be transport or library internals (the
#: log gets those); for every other code the details are the server's own message, safe to send.
_GENERIC_MESSAGES = {
    "UNAVAILABLE": "the lip-sync backend is unavailable",
    "DEADLINE_EXCEEDED": "the lip-sync backend did not answer in time",
    "INTERNAL": "the lip-sync backend failed",
}


def wire_code(status: grpc.StatusCode) -> str:
    """The code an error reply carries for a gRPC status."""
    return WIRE_CODES[status]


def status_of_number(number: int) -> grpc.StatusCode:
    """The gRPC status of a status code number (as `lipsync.v1.Error.code` carries); UNKNOWN if none."""
    return grpc.StatusCode[GRPC_STATUS_NAMES.get(number, "UNKNOWN")]


class ProxyError(Exception):
    """A request the proxy answers with an error: `code` is a wire code, `message` safe to send."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BackendError(ProxyError):
    """A gRPC call failed; `status` is the gRPC status, `details` what the backend or library said."""

    def __init__(self, status: grpc.StatusCode, details: str) -> None:
        code = wire_code(status)
        super().__init__(code, _GENERIC_MESSAGES.get(code, details) or status.name.lower().replace("_", " "))
        self.status = status
        self.details = details


def failure(code: grpc.StatusCode, details: str) -> BackendError:
    """The BackendError of a failed call or of a frame's own Error in a batch, its details logged: a
    server failure (INTERNAL to the client) at WARNING, the rest (the client's mistakes, an unreachable
    backend the health watch reports anyway) at DEBUG."""
    log = logger.warning if WIRE_CODES[code] == "INTERNAL" else logger.debug
    log("gRPC call failed: %s %s", code.name, details)
    return BackendError(code, details)


def rpc_error(error: grpc.aio.AioRpcError) -> BackendError:
    """The BackendError of a failed grpc.aio call, logged as `failure` says."""
    return failure(error.code(), error.details() or "")


class OverloadedError(ProxyError):
    """The proxy's global in-flight cap is reached; the client should back off."""

    def __init__(self, limit: int) -> None:
        super().__init__("RESOURCE_EXHAUSTED", f"the proxy is at its limit of {limit} requests in flight")


class StartupError(Exception):
    """The proxy cannot start (port in use, bad or unresolvable address); the message is one line."""
