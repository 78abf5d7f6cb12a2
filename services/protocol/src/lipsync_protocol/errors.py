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

#: gRPC status names in the order of their numbers (grpc/status.h). The JSON replies carry the name,
#: the v2 binary replies the number; this is the one place that maps between them.
_STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
GRPC_STATUS_NAMES: Mapping[int, str] = MappingProxyType(dict(enumerate(_STATUS_NAMES)))
GRPC_STATUS_CODES: Mapping[str, int] = MappingProxyType(
    {name: number for number, name in GRPC_STATUS_NAMES.items()}
)


class ProtocolError(Exception):
    """A message that cannot be accepted, with a reply-ready description.

    ``code`` is the gRPC status name sent to the peer (always ``INVALID_ARGUMENT`` for malformed
    input), ``message`` is safe to send as it is (it never echoes raw client bytes), and
    ``request_id`` is the request's id when it could be read before the problem was found, so the
    error reply can name the request it answers.
    """

    def __init__(
        self, message: str, *, request_id: RequestId | None = None, code: str = "INVALID_ARGUMENT"
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ProtocolError({self.message!r}, request_id={self.request_id!r}, code={self.code!r})"
