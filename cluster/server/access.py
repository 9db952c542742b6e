"""Who may call what: the one table of roles per RPC, and the check the interceptor runs.

The caller's identity comes from its client certificate (cluster/tls.py). A method not in the
table needs `admin` (fail closed); health checks and reflection need only a valid certificate.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc

from cluster.errors import PermissionDenied
from cluster.tls import Access, Identity, identity_of

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_V1 = "/tcphop.v1."
REQUIRED: dict[str, Access | None] = {
    **{
        f"{_V1}Cluster/{m}": Access.READER
        for m in ("ListNodes", "GetNode", "ListServices", "GetService", "GetStatus", "WatchEvents")
    },
    **{
        f"{_V1}Cluster/{m}": Access.ADMIN
        for m in ("Designate", "SetServing", "ApplyService", "ApplyServices", "DeleteService")
    },
    f"{_V1}Scheduler/Place": Access.READER,
    f"{_V1}Scheduler/GetLoads": Access.READER,
    f"{_V1}Datapath/GetDatapath": Access.READER,
    f"{_V1}Datapath/ListFlows": Access.READER,
    f"{_V1}Datapath/ListConnections": Access.NODE,  # client addresses: nodes only
    f"{_V1}Telemetry/Report": Access.NODE,
}
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")  # any valid certificate
GRANTS = {
    Access.READER: {Access.READER},
    Access.ADMIN: {Access.READER, Access.ADMIN},
    Access.NODE: {Access.NODE},
}
CALLER: ContextVar[Identity | None] = ContextVar("tcphop_caller", default=None)


def authorize(method: str, context: Ctx) -> Identity:
    """The caller's identity, if its certificate grants `method`; else PermissionDenied."""
    pems = list(context.auth_context().get("x509_pem_cert") or [])
    identity = identity_of(pems[0]) if pems else None
    if identity is None:
        raise PermissionDenied(
            "the client certificate names no tcphop role (a SAN URI tcphop://role/reader, "
            "admin or node); issue one with `clusterctl pki issue`"
        )
    if not method.startswith(OPEN_PREFIXES):
        needed = REQUIRED.get(method, Access.ADMIN)
        if needed is not None and needed not in GRANTS[identity.access]:
            raise PermissionDenied(
                f"{method.rsplit('/', 1)[-1]} needs the {needed} role; this certificate is "
                f"{identity.access}{f' ({identity.node_id})' if identity.node_id else ''}"
            )
    CALLER.set(identity)
    return identity
