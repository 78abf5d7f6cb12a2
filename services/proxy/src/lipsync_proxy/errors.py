"""The proxy's exceptions and the one table from gRPC status codes to the codes its replies carry.

Malformed client input is :class:`lipsync_proxy.protocol.errors.ProtocolError` (the protocol core's);
everything else the connection handler answers is a :class:`ProxyError` with a wire code and a message
that is safe to send to the client. The detail behind a message is logged where it is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

import grpc

logger = logging.getLogger(__name__)

#: The code each gRPC status becomes in an error reply: the status name for every code the
#: SPEC's clients handle; codes a client cannot act on differently collapse into one of those.
WIRE_CODES: Mapping[grpc.StatusCode, str] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
        grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
        grpc.StatusCode.OUT_OF_RANGE: "OUT_OF_RANGE",
        grpc.StatusCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
        grpc.StatusCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
        grpc.StatusCode.UNAVAILABLE: "UNAVAILABLE",
        grpc.StatusCode.INTERNAL: "INTERNAL",
        grpc.StatusCode.FAILED_PRECONDITION: "FAILED_PRECONDITION",
        grpc.StatusCode.PERMISSION_DENIED: "PERMISSION_DENIED",
        grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
        grpc.StatusCode.ALREADY_EXISTS: "ALREADY_EXISTS",
        # The server gave up on the call (it is stopping or aborted it): trying again may work.
        grpc.StatusCode.CANCELLED: "UNAVAILABLE",
        grpc.StatusCode.ABORTED: "UNAVAILABLE",
        # The server failed in a way the client cannot fix.
        grpc.StatusCode.UNKNOWN: "INTERNAL",
        grpc.StatusCode.UNIMPLEMENTED: "INTERNAL",
        grpc.StatusCode.DATA_LOSS: "INTERNAL",
        grpc.StatusCode.OK: "INTERNAL",
    }
)

#: Codes whose gRPC details are the server's own safe message; for the others the details may be
#: transport or library internals, so the client gets a generic text and the log gets the details.
_DETAILS_ARE_SAFE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)

_GENERIC_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "UNAVAILABLE": "the lip-sync backend is unavailable",
        "DEADLINE_EXCEEDED": "the lip-sync backend did not answer in time",
        "INTERNAL": "the lip-sync backend failed",
    }
)


_STATUS_BY_NUMBER: Mapping[int, grpc.StatusCode] = MappingProxyType({c.value[0]: c for c in grpc.StatusCode})


def wire_code(status: grpc.StatusCode) -> str:
    """The code an error reply carries for a gRPC status."""
    return WIRE_CODES[status]


def status_of_number(number: int) -> grpc.StatusCode:
    """The gRPC status of a status code number (as `lipsync.v1.Error.code` carries); UNKNOWN if none."""
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


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
        safe = details if status in _DETAILS_ARE_SAFE and details else _GENERIC_MESSAGES.get(code, details)
        super().__init__(code, safe or status.name.lower().replace("_", " "))
        self.status = status
        self.details = details


_SERVER_FAILURES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})


def failure(code: grpc.StatusCode, details: str) -> BackendError:
    """The BackendError of a failed call or of a frame's own Error in a batch, its details logged: a
    server failure at WARNING, the rest (the client's mistakes, an unreachable backend the health
    watch reports anyway) at DEBUG."""
    log = logger.warning if code in _SERVER_FAILURES else logger.debug
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
