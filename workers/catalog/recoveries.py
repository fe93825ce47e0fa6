"""The recovery-time evidence (RecoveryRun rows): drills and user restores, per service.

Keyword-only like queries.py; callers own the session.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workers.catalog.models import DRILL, SUCCESS, Artifact, Backup, RecoveryRun


@dataclass(frozen=True)
class DrillCandidate:
    """A retained successful backup holding the service's artifact, and its latest drill."""

    backup_id: int
    timestamp: str
    drilled_at: datetime | None  # its latest drill of the service finished; None: never
    drill_status: str | None  # that drill's status


def last_run(session: Session, *, namespace: str, service: str, trigger: str) -> RecoveryRun | None:
    """The service's most recent drill (DRILL) or user restore (USER_RESTORE)."""
    query = (
        select(RecoveryRun)
        .where(
            RecoveryRun.namespace == namespace,
            RecoveryRun.service == service,
            RecoveryRun.trigger == trigger,
        )
        .order_by(RecoveryRun.finished_at.desc(), RecoveryRun.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def last_drill_of(
    session: Session, *, namespace: str, service: str, timestamp: str
) -> RecoveryRun | None:
    """The latest drill of `service` from backup `timestamp` (of `namespace`)."""
    query = (
        select(RecoveryRun)
        .where(
            RecoveryRun.namespace == namespace,
            RecoveryRun.service == service,
            RecoveryRun.trigger == DRILL,
            RecoveryRun.timestamp == timestamp,
        )
        .order_by(RecoveryRun.finished_at.desc(), RecoveryRun.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def drill_candidates(
    session: Session, *, namespace: str, service: str, archived: Collection[str] = ()
) -> list[DrillCandidate]:
    """Every successful backup of the namespace holding a successful artifact of `service`
    (the retained ones: retention deletes the rows of what it deletes), each with its
    latest drill of that service; newest backup first. Backups with an artifact of the
    service in one of the `archived` storage classes are left out."""
    rank = (
        func.row_number()
        .over(
            partition_by=RecoveryRun.backup_id,
            order_by=(RecoveryRun.finished_at.desc(), RecoveryRun.id.desc()),
        )
        .label("rank")
    )
    drills = (
        select(RecoveryRun.backup_id, RecoveryRun.finished_at, RecoveryRun.status, rank)
        .where(
            RecoveryRun.namespace == namespace,
            RecoveryRun.service == service,
            RecoveryRun.trigger == DRILL,
            RecoveryRun.backup_id.is_not(None),
        )
        .subquery()
    )
    holds = (
        select(Artifact.id)
        .where(
            Artifact.backup_id == Backup.id,
            Artifact.service == service,
            Artifact.status == SUCCESS,
        )
        .exists()
    )
    query = (
        select(
            Backup.id,
            Backup.timestamp,
            drills.c.finished_at,
            drills.c.status,
        )
        .outerjoin(drills, (drills.c.backup_id == Backup.id) & (drills.c.rank == 1))
        .where(Backup.namespace == namespace, Backup.status == SUCCESS, holds)
        .order_by(Backup.timestamp.desc())
    )
    if archived:
        cold = (
            select(Artifact.id)
            .where(
                Artifact.backup_id == Backup.id,
                Artifact.service == service,
                Artifact.storage_class.in_(sorted(archived)),
            )
            .exists()
        )
        query = query.where(~cold)
    return [DrillCandidate(*row) for row in session.execute(query)]


def runs_of(
    session: Session, *, namespace: str, service: str, trigger: str, limit: int = 20
) -> Sequence[RecoveryRun]:
    """The service's latest drills or user restores, newest first."""
    query = (
        select(RecoveryRun)
        .where(
            RecoveryRun.namespace == namespace,
            RecoveryRun.service == service,
            RecoveryRun.trigger == trigger,
        )
        .order_by(RecoveryRun.finished_at.desc(), RecoveryRun.id.desc())
        .limit(limit)
    )
    return session.scalars(query).all()
