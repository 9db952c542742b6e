"""Domain errors of tcphop's control plane.

    ClusterError
    ├── ValidationError      bad input; nothing was changed       -> INVALID_ARGUMENT
    ├── NotFound             unknown node or service              -> NOT_FOUND
    ├── AlreadyExists        e.g. a node id registered twice      -> ALREADY_EXISTS
    ├── NotLeader            a leader-only call reached a follower -> FAILED_PRECONDITION
    ├── PermissionDenied     the certificate's role does not grant it -> PERMISSION_DENIED
    └── StoreError
        ├── StoreUnavailable etcd cannot be reached in time       -> UNAVAILABLE
        ├── LeaseExpired     a lease we held is gone
        └── RevisionCompacted a watch asked for history etcd dropped -> OUT_OF_RANGE

Third-party exceptions (aetcd's, grpc's) are translated into these inside the module that
imports the library, never further out.
"""

from __future__ import annotations

from collections.abc import Sequence


class ClusterError(Exception):
    """Base of every tcphop control-plane error."""


class ValidationError(ClusterError):
    """The input is invalid. Each problem reads `field.path: what is wrong`."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class NotFound(ClusterError):
    """The named node or service does not exist."""


class AlreadyExists(ClusterError):
    """Something that must be unique is already there."""


class NotLeader(ClusterError):
    """Only the leader answers this call."""


class PermissionDenied(ClusterError):
    """The caller's certificate does not grant this call."""


class StoreError(ClusterError):
    """The key-value store failed."""


class StoreUnavailable(StoreError):
    """The store could not be reached within the deadline."""


class LeaseExpired(StoreError):
    """A lease is no longer held: keys under it are gone."""


class RevisionCompacted(StoreError):
    """A watch asked for revisions the store has compacted away."""

    def __init__(self, compacted_revision: int) -> None:
        self.compacted_revision = compacted_revision
        super().__init__(
            f"revisions before {compacted_revision} were compacted; "
            f"watch from {compacted_revision} or from now (0)"
        )
