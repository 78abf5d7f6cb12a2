"""The one table from the server's errors to gRPC status codes."""

from __future__ import annotations

import grpc

from lipsync_server import errors

_CODES: tuple[tuple[type[errors.LipsyncError], grpc.StatusCode], ...] = (
    (errors.ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.FrameOutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ModelUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.PackageError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(error: errors.LipsyncError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL
