"""tcphop's client SDK: `ClusterClient`, the value types it takes and returns, its errors.

from cluster.sdk import ClusterClient, ServiceSpec

async with ClusterClient(["127.0.0.1:7701"]) as c:
    await c.apply_service(ServiceSpec(name="web", vip="10.100.0.10", port=80))
"""

from cluster.documents import service_to_doc, services_from_file_doc
from cluster.errors import ValidationError
from cluster.model import (
    ApplyResult,
    CheckType,
    ClusterEvent,
    ClusterStatus,
    CookieMatch,
    Designation,
    EventType,
    HeaderMatch,
    HealthCheck,
    Match,
    Mode,
    Node,
    Policy,
    Pool,
    Registration,
    Role,
    Rule,
    ServiceSpec,
    Serving,
)
from cluster.sdk.client import ClusterClient
from cluster.sdk.errors import (
    AlreadyExists,
    DeadlineExceeded,
    HistoryCompacted,
    InvalidArgument,
    NotFound,
    NotLeader,
    PermissionDenied,
    SdkError,
    ServerError,
    Unavailable,
)
from cluster.sdk.views import DatapathView, Flow, FlowsView, LoadsView, NodeLoadView
from cluster.tls import TlsFiles

__all__ = [
    "AlreadyExists",
    "ApplyResult",
    "CheckType",
    "ClusterClient",
    "ClusterEvent",
    "ClusterStatus",
    "CookieMatch",
    "DatapathView",
    "DeadlineExceeded",
    "Designation",
    "EventType",
    "Flow",
    "FlowsView",
    "HeaderMatch",
    "HealthCheck",
    "HistoryCompacted",
    "InvalidArgument",
    "LoadsView",
    "Match",
    "Mode",
    "Node",
    "NodeLoadView",
    "NotFound",
    "NotLeader",
    "PermissionDenied",
    "Policy",
    "Pool",
    "Registration",
    "Role",
    "Rule",
    "SdkError",
    "ServerError",
    "ServiceSpec",
    "Serving",
    "TlsFiles",
    "Unavailable",
    "ValidationError",
    "service_to_doc",
    "services_from_file_doc",
]
