"""Request and response bodies of the HTTP API (DESIGN.md section 1: these names must not drift).

fields (DNS labels, timestamps and their OpenAPI forms), requests, responses, listing
(`GET /backups`), pitr (`backup/latest`'s recoverable windows). Import from here.
"""

from api.schemas.fields import (
    DNS_LABEL_SCHEMA,
    EXAMPLE_TS,
    TIMESTAMP_SCHEMA,
    DnsLabel,
    DnsLabelText,
    Moment,
    Timestamp,
    TimestampText,
)
from api.schemas.listing import BackupList, BackupSummary
from api.schemas.pitr import LatestBackupStatus, PitrWindowStatus
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
    RestoreAccepted,
    RestoreStatus,
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
    "LatestBackupStatus",
    "Message",
    "Moment",
    "NotReady",
    "PitrWindowStatus",
    "Readiness",
    "ResponseModel",
    "RestoreAccepted",
    "RestoreRequest",
    "RestoreStatus",
    "RestoreStatusQuery",
    "ServiceToggle",
    "Status",
    "Timestamp",
    "TimestampText",
    "openapi_body",
]
