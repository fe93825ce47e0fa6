"""Request and response bodies of the HTTP API (DESIGN.md section 1: these names must not drift).

fields (DNS labels, timestamps and their OpenAPI forms), requests, responses, listing
(`GET /backups`). Import from here.
"""

from api.schemas.fields import (
    DNS_LABEL_SCHEMA,
    EXAMPLE_TS,
    TIMESTAMP_SCHEMA,
    DnsLabel,
    DnsLabelText,
    Timestamp,
    TimestampText,
)
from api.schemas.listing import BackupList, BackupSummary
from api.schemas.requests import (
    NAMESPACE,
    BackupRequest,
    RestoreRequest,
    RestoreStatusQuery,
    ServiceToggle,
    openapi_body,
)
from api.schemas.responses import (
    ArtifactDetail,
    BackupDetail,
    BackupStatus,
    Health,
    HookRunDetail,
    Message,
    NotReady,
    Readiness,
    ResponseModel,
    Status,
)

__all__ = [
    "DNS_LABEL_SCHEMA",
    "EXAMPLE_TS",
    "NAMESPACE",
    "TIMESTAMP_SCHEMA",
    "ArtifactDetail",
    "BackupDetail",
    "BackupList",
    "BackupRequest",
    "BackupStatus",
    "BackupSummary",
    "DnsLabel",
    "DnsLabelText",
    "Health",
    "HookRunDetail",
    "Message",
    "NotReady",
    "Readiness",
    "ResponseModel",
    "RestoreRequest",
    "RestoreStatusQuery",
    "ServiceToggle",
    "Status",
    "Timestamp",
    "TimestampText",
    "openapi_body",
]
