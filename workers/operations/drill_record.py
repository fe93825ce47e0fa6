"""What a test-restore run leaves: its results (one DrillResult per service drilled), each
a `recovery_runs` row (trigger `drill`: duration, counts, the moment a pitr service's base
backup went to), and the backup's `verifications` row (kind `restore`), whose failure marks
the backup `verified: Failed` and is reported as verify.failed (operations/verdicts.py).
The drill alerts follow from the rows (monitoring/drill_alerts.py).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import DRILL, FAILED, SUCCESS, RecoveryRun, Verification
from workers.fleet import Fleet
from workers.operations.verdicts import report_verdict
from workers.timestamps import utcnow


@dataclass(frozen=True)
class DrillResult:
    """One service of one backup restored into scratch."""

    service: str
    status: str
    started_at: datetime
    finished_at: datetime  # the check and the scratch's removal done
    seconds: float  # the restore, from the first byte read to the scratch holding the data
    rto_seconds: int
    bytes_read: int
    counts_expected: dict[str, int] | None
    counts_found: dict[str, int] | None
    error: str | None = None
    target_time: datetime | None = None  # a base backup recovered to this moment
    replayed_to: datetime | None = None  # the last transaction that recovery replayed
    target_skipped: str | None = None  # why a base backup went to its consistent point

    @property
    def met_rto(self) -> bool:
        return self.status == SUCCESS and self.seconds <= self.rto_seconds


@dataclass(frozen=True)
class RestoreTestResult:
    namespace: str
    timestamp: str
    status: str
    tested: list[str]  # services restored and compared
    skipped: list[str]  # services that cannot be drilled (see `backfleet report`)
    error: str | None = None
    store: str = "primary"
    drills: list[DrillResult] = field(default_factory=list)


def record_drills(fleet: Fleet, result: RestoreTestResult) -> None:
    """The run's rows, then its verdict."""
    now = utcnow()
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=result.namespace, timestamp=result.timestamp)
        for drill in result.drills:
            session.add(_run_row(result, drill, backup.id if backup else None, fleet))
        session.add(
            Verification(
                backup_id=backup.id if backup else None,
                namespace=result.namespace,
                timestamp=result.timestamp,
                kind="restore",
                store="primary",
                status=result.status,
                artifacts=len(result.tested),
                bytes_read=sum(drill.bytes_read for drill in result.drills),
                error=result.error,
                checked_at=now,
            )
        )
        if backup is not None and result.status == FAILED:
            backup.verified, backup.verified_at = FAILED, now
    failed = [result] if result.status == FAILED else []
    report_verdict(
        fleet,
        namespace=result.namespace,
        timestamp=result.timestamp,
        failed=failed,
        what="test restore",
        condition_suffix=":restore",
    )


def _run_row(
    result: RestoreTestResult, drill: DrillResult, backup_id: int | None, fleet: Fleet
) -> RecoveryRun:
    spec = fleet.config.services_of(result.namespace)[drill.service]
    values: dict[str, Any] = {
        "namespace": result.namespace,
        "service": drill.service,
        "trigger": DRILL,
        "kind": spec.kind,
        "backup_id": backup_id,
        "source_namespace": result.namespace,
        "timestamp": result.timestamp,
        "status": drill.status,
        "started_at": drill.started_at,
        "finished_at": drill.finished_at,
        "seconds": drill.seconds,
        "rto_seconds": drill.rto_seconds,
        "bytes_read": drill.bytes_read,
        "counts_expected": drill.counts_expected,
        "counts_found": drill.counts_found,
        "error": drill.error,
        "target_time": drill.target_time,
        "replayed_to": drill.replayed_to,
        "target_skipped": drill.target_skipped,
    }
    return RecoveryRun(**values)
