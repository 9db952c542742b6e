"""Errors the SDK raises. Every call raises only these (or ValueError for bad arguments).

SdkError
├── InvalidArgument    the cluster rejected the input; nothing changed
├── NotFound           unknown node or service
├── AlreadyExists
├── Unavailable        no endpoint answered (or etcd is down behind them)
│   └── DeadlineExceeded   the call's timeout ran out
├── HistoryCompacted   a watch asked for revisions etcd no longer has
└── ServerError        anything else the server reported
"""

from __future__ import annotations


class SdkError(Exception):
    """Base of every error the SDK raises."""


class InvalidArgument(SdkError):
    pass


class NotFound(SdkError):
    pass


class AlreadyExists(SdkError):
    pass


class PermissionDenied(SdkError):
    """The client certificate's role does not grant this call (PERMISSION_DENIED)."""


class NotLeader(SdkError):
    pass


class Unavailable(SdkError):
    pass


class DeadlineExceeded(Unavailable):
    pass


class HistoryCompacted(SdkError):
    pass


class ServerError(SdkError):
    pass
