"""The protocol core's one exception and the table of gRPC status codes used on the wire.

Every parser in this package raises :class:`ProtocolError` and nothing else, whatever it is given, so
the connection handler needs exactly one ``except`` around a decode to answer a bad message and keep
the connection open.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Request ids as they appear in messages: the JSON ``"id"`` (string or integer) or a v2 request id.
RequestId = str | int

#: gRPC status names and numbers (grpc/status.h). The JSON replies carry the name, the v2 binary
#: replies the number; this is the one place that maps between them.
GRPC_STATUS_CODES: Mapping[str, int] = MappingProxyType(
    {
        "OK": 0,
        "CANCELLED": 1,
        "UNKNOWN": 2,
        "INVALID_ARGUMENT": 3,
        "DEADLINE_EXCEEDED": 4,
        "NOT_FOUND": 5,
        "ALREADY_EXISTS": 6,
        "PERMISSION_DENIED": 7,
        "RESOURCE_EXHAUSTED": 8,
        "FAILED_PRECONDITION": 9,
        "ABORTED": 10,
        "OUT_OF_RANGE": 11,
        "UNIMPLEMENTED": 12,
        "INTERNAL": 13,
        "UNAVAILABLE": 14,
        "DATA_LOSS": 15,
        "UNAUTHENTICATED": 16,
    }
)

#: The inverse of :data:`GRPC_STATUS_CODES`.
GRPC_STATUS_NAMES: Mapping[int, str] = MappingProxyType({v: k for k, v in GRPC_STATUS_CODES.items()})

INVALID_ARGUMENT = "INVALID_ARGUMENT"


class ProtocolError(Exception):
    """A message that cannot be accepted, with a reply-ready description.

    ``code`` is the gRPC status name sent to the peer (always ``INVALID_ARGUMENT`` for malformed
    input), ``message`` is safe to send as it is (it never echoes raw client bytes), and
    ``request_id`` is the request's id when it could be read before the problem was found, so the
    error reply can name the request it answers.
    """

    def __init__(
        self, message: str, *, request_id: RequestId | None = None, code: str = INVALID_ARGUMENT
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ProtocolError({self.message!r}, request_id={self.request_id!r}, code={self.code!r})"
