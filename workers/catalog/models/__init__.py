"""SQLAlchemy 2 models. Statuses are the API's: Pending, Running, Success, Failed.

One module per concern, all on the one declarative Base (base.py): backups (with their
artifacts, parts, hook runs, skipped runs), restores (and recovery runs), checks
(verifications), monitoring (alerts, services seen), user_events (the audit trail), wal
(point-in-time recovery's WAL, gaps and streamers).
Importing this package registers every table in Base.metadata (Alembic's env reads it).
"""

from workers.catalog.models.backups import Artifact, Backup, HookRun, SkippedRun, UploadPart
from workers.catalog.models.base import (
    ACTIVE_STATUSES,
    ACTIVE_WHERE,
    FAILED,
    PENDING,
    RUNNING,
    SUCCESS,
    Base,
    UTCDateTime,
)
from workers.catalog.models.checks import Verification
from workers.catalog.models.monitoring import Alert, ServiceSeen
from workers.catalog.models.restores import DRILL, USER_RESTORE, RecoveryRun, Restore
from workers.catalog.models.user_events import EventId, UserEvent, UserEventShipping
from workers.catalog.models.wal import WAL_HISTORY, WAL_SEGMENT, WalGap, WalSegment, WalStream

__all__ = [
    "ACTIVE_STATUSES",
    "ACTIVE_WHERE",
    "DRILL",
    "FAILED",
    "PENDING",
    "RUNNING",
    "SUCCESS",
    "USER_RESTORE",
    "WAL_HISTORY",
    "WAL_SEGMENT",
    "Alert",
    "Artifact",
    "Backup",
    "Base",
    "EventId",
    "HookRun",
    "RecoveryRun",
    "Restore",
    "ServiceSeen",
    "SkippedRun",
    "UTCDateTime",
    "UploadPart",
    "UserEvent",
    "UserEventShipping",
    "Verification",
    "WalGap",
    "WalSegment",
    "WalStream",
]
