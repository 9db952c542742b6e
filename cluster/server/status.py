"""Domain errors -> gRPC status codes, in one table (the SDK maps them back)."""

from __future__ import annotations

import grpc

from cluster.errors import (
    AlreadyExists,
    ClusterError,
    NotFound,
    NotLeader,
    PermissionDenied,
    RevisionCompacted,
    StoreUnavailable,
    ValidationError,
)

STATUS_BY_ERROR: tuple[tuple[type[ClusterError], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (NotLeader, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (RevisionCompacted, grpc.StatusCode.OUT_OF_RANGE),
)


def status_for(error: ClusterError) -> grpc.StatusCode:
    for kind, code in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL
