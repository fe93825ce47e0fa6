"""Recovery-time evidence per service: its RTO, its last drill (when, which backup, how
long, the counts), whether that met the RTO, whether a retained backup's latest drill
failed, whether its drills are overdue, and the last restore a user ran.

Shared by `backfleet report`, `GET /athena/api/v1/report/recovery`, /metrics and the
drill alerts (monitoring/drill_alerts.py).

Overdue: a drilled service is due again its `test_restore` cadence (less a tenth of
it, at most an hour, as verification's) after its last drill; the test-restore run
after that moment (RESTORE_TEST_SCHEDULE) should drill it, and past that run plus a
grace (a tenth of the cadence, at least an hour, at most a day: a run drills one
service after another) it is overdue. A service never drilled counts from the moment
it had something to drill: its oldest retained backup, or when the fleet first saw it
(services_seen) if that is later, so a fresh install is not overdue before its first
drill was due, nor is a service without a backup (its freshness alerts about that).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from workers.catalog import recoveries, services_seen
from workers.catalog.db import session_scope
from workers.catalog.models import DRILL, FAILED, SUCCESS, USER_RESTORE, RecoveryRun
from workers.fleet import Fleet
from workers.sources import source_class
from workers.timestamps import longest_gap, next_run, parse_timestamp, utcnow

HOUR, DAY = 3600, 86400


def due_after(cadence: int) -> timedelta:
    """How old a service's last drill must be for it to be due again: its cadence, less a
    tenth of it (at most an hour), so a weekly drill on a weekly schedule that ran a little
    later last week, or took longer, is not put off by a week."""
    return timedelta(seconds=cadence - min(cadence / 10, HOUR))


def overdue_grace(cadence: int) -> timedelta:
    """How long after the run that should have drilled a service it is overdue."""
    return timedelta(seconds=min(max(cadence / 10, HOUR), DAY))


@dataclass(frozen=True)
class RunSummary:
    """One drill or user restore of a service, for people and machines."""

    timestamp: str  # the backup restored
    source_namespace: str
    started_at: datetime
    finished_at: datetime
    seconds: float
    status: str
    rto_seconds: int
    bytes_read: int
    counts_expected: dict[str, Any] | None
    counts_found: dict[str, Any] | None
    error: str | None
    # A pitr service's base backup recovered to a moment: which, the last transaction
    # replayed; or why a drill of it went to its consistent point instead.
    target_time: datetime | None = None
    replayed_to: datetime | None = None
    target_skipped: str | None = None

    @classmethod
    def of(cls, row: RecoveryRun) -> "RunSummary":
        return cls(
            timestamp=row.timestamp,
            source_namespace=row.source_namespace,
            started_at=row.started_at,
            finished_at=row.finished_at,
            seconds=row.seconds,
            status=row.status,
            rto_seconds=row.rto_seconds,
            bytes_read=row.bytes_read,
            counts_expected=row.counts_expected,
            counts_found=row.counts_found,
            error=row.error,
            target_time=row.target_time,
            replayed_to=row.replayed_to,
            target_skipped=row.target_skipped,
        )

    @property
    def met_rto(self) -> bool:
        """It succeeded within the RTO in force when it ran."""
        return self.status == SUCCESS and self.seconds <= self.rto_seconds

    @property
    def counts_ok(self) -> bool | None:
        """None when nothing was recorded to compare with."""
        if self.counts_expected is None:
            return None
        return self.counts_expected == self.counts_found

    def as_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "sourceNamespace": self.source_namespace,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "rtoSeconds": self.rto_seconds,
            "metRto": self.met_rto,
            "bytesRead": self.bytes_read,
            "countsExpected": self.counts_expected,
            "countsFound": self.counts_found,
            "countsOk": self.counts_ok,
            "error": self.error,
            "targetTime": _moment(self.target_time),
            "replayedTo": _moment(self.replayed_to),
            "targetSkipped": self.target_skipped,
        }


def _moment(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class ServiceRecovery:
    namespace: str
    service: str
    kind: str
    not_drilled: str | None  # why the service cannot be drilled; None: it can
    rto: int  # seconds: its `rto`, else BACKUP_RTO
    every: int  # seconds: its `test_restore` cadence, else TEST_RESTORE_EVERY
    last_drill: RunSummary | None
    last_restore: RunSummary | None  # the last restore a user ran
    overdue: bool
    due_by: datetime | None  # overdue after this; None: nothing to drill (yet)
    failing: list[str] = field(default_factory=list)  # backups whose latest drill failed

    @property
    def missed_rto(self) -> bool:
        """Its last drill succeeded, but took longer than the RTO."""
        drill = self.last_drill
        return drill is not None and drill.status == SUCCESS and not drill.met_rto

    @property
    def healthy(self) -> bool:
        return not (self.missed_rto or self.failing or self.overdue)

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "service": self.service,
            "kind": self.kind,
            "drillable": self.not_drilled is None,
            "notDrilled": self.not_drilled,
            "rtoSeconds": self.rto,
            "testRestoreSeconds": self.every,
            "lastDrill": self.last_drill.as_dict() if self.last_drill else None,
            "metRto": self.last_drill.met_rto if self.last_drill else None,
            "failing": self.failing,
            "overdue": self.overdue,
            "dueBy": self.due_by.isoformat() if self.due_by else None,
            "lastRestore": self.last_restore.as_dict() if self.last_restore else None,
            "healthy": self.healthy,
        }


def recovery_report(
    fleet: Fleet, *, namespaces: list[str] | None = None, now: datetime | None = None
) -> list[ServiceRecovery]:
    """Every configured service (of `namespaces`, when given), in name order."""
    now = now or utcnow()
    chosen = sorted(fleet.config.namespaces) if namespaces is None else sorted(namespaces)
    found: list[ServiceRecovery] = []
    with session_scope(fleet.settings.database_url) as session:
        for namespace in chosen:
            specs = fleet.config.services_of(namespace)
            seen = services_seen.first_seen(
                session, namespace=namespace, services=list(specs), moment=now
            )
            for service, spec in sorted(specs.items()):
                policy = fleet.config.policy_of(namespace, service, fleet.settings)
                why_not = source_class(spec.kind).restore_test_unavailable(spec)
                drill = recoveries.last_run(
                    session, namespace=namespace, service=service, trigger=DRILL
                )
                restore = recoveries.last_run(
                    session, namespace=namespace, service=service, trigger=USER_RESTORE
                )
                candidates = recoveries.drill_candidates(
                    session, namespace=namespace, service=service
                )
                failing = [c.timestamp for c in candidates if c.drill_status == FAILED]
                if drill is not None and drill.status == FAILED and drill.timestamp not in failing:
                    failing.append(drill.timestamp)  # e.g. a backup the catalog never held
                due_by = None
                if why_not is None:
                    oldest = min((c.timestamp for c in candidates), default=None)
                    due_by = _overdue_after(
                        fleet,
                        every=policy.test_restore,
                        last=drill.finished_at if drill else None,
                        since=max(seen[service], parse_timestamp(oldest)) if oldest else None,
                    )
                found.append(
                    ServiceRecovery(
                        namespace=namespace,
                        service=service,
                        kind=spec.kind,
                        not_drilled=why_not,
                        rto=policy.rto,
                        every=policy.test_restore,
                        last_drill=RunSummary.of(drill) if drill else None,
                        last_restore=RunSummary.of(restore) if restore else None,
                        overdue=due_by is not None and now > due_by,
                        due_by=due_by,
                        failing=sorted(failing, reverse=True),
                    )
                )
    return found


def _overdue_after(
    fleet: Fleet, *, every: int, last: datetime | None, since: datetime | None
) -> datetime | None:
    """When the service's drill turns overdue: the run after it was due, plus the grace."""
    if last is not None:
        due = last + due_after(every)
    elif since is not None:
        due = since
    else:
        return None  # nothing to drill yet
    schedule = fleet.settings.restore_test_schedule
    run = next_run(schedule, due) if longest_gap(schedule) is not None else due
    return run + overdue_grace(every)
