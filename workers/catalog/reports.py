"""Read-only summaries of the catalog for health, `/metrics` and `backfleet status`.

Keyword-only like queries.py; callers own the session.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from workers.catalog.models import FAILED, SUCCESS, Alert, Artifact, Backup, Verification

# namespace, service, timestamp, stored bytes, first start, last finish
ServiceSuccess = tuple[str, str, str, int | None, datetime | None, datetime | None]


def last_success(session: Session, *, namespace: str, service: str | None = None) -> str | None:
    """The timestamp of the newest successful backup (holding a successful `service`)."""
    query = select(func.max(Backup.timestamp)).where(
        Backup.namespace == namespace, Backup.status == SUCCESS
    )
    if service is not None:
        query = query.join(Artifact).where(Artifact.service == service, Artifact.status == SUCCESS)
    return session.scalar(query)


def newest_successes(session: Session) -> Sequence[Backup]:
    """The newest successful backup of each namespace."""
    newest = (
        select(Backup.namespace, func.max(Backup.timestamp).label("stamp"))
        .where(Backup.status == SUCCESS)
        .group_by(Backup.namespace)
        .subquery()
    )
    query = select(Backup).join(
        newest,
        (Backup.namespace == newest.c.namespace) & (Backup.timestamp == newest.c.stamp),
    )
    return session.execute(query).scalars().all()


def _newest_service_stamps() -> Subquery:
    """(namespace, service, stamp): the newest successful backup with the service successful."""
    return (
        select(
            Backup.namespace,
            Artifact.service,
            func.max(Backup.timestamp).label("stamp"),
        )
        .join(Artifact)
        .where(Backup.status == SUCCESS, Artifact.status == SUCCESS)
        .group_by(Backup.namespace, Artifact.service)
        .subquery()
    )


def failed_backups(session: Session) -> list[tuple[str, int]]:
    """(namespace, how many Failed backups)."""
    query = (
        select(Backup.namespace, func.count(Backup.id))
        .where(Backup.status == FAILED)
        .group_by(Backup.namespace)
    )
    return [(namespace, count) for namespace, count in session.execute(query)]


def newest_service_successes(session: Session) -> list[ServiceSuccess]:
    """Per namespace and service: the newest successful backup with the service's artifacts
    successful, their stored bytes, first start and last finish."""
    newest = _newest_service_stamps()
    query = (
        select(
            Backup.namespace,
            Artifact.service,
            Backup.timestamp,
            func.sum(Artifact.size),
            func.min(Artifact.started_at),
            func.max(Artifact.finished_at),
        )
        .join(Artifact)
        .join(
            newest,
            (Backup.namespace == newest.c.namespace)
            & (Artifact.service == newest.c.service)
            & (Backup.timestamp == newest.c.stamp),
        )
        .group_by(Backup.namespace, Artifact.service, Backup.timestamp)
    )
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


@dataclass(frozen=True)
class ArtifactSizes:
    backup_id: int
    timestamp: str  # the backup's
    service: str
    size: int
    source_size: int
    encrypted: bool


def service_size_history(
    session: Session, *, namespace: str, services: Collection[str], through: str, backups: int
) -> list[ArtifactSizes]:
    """Every successful artifact of `services` in the namespace's last `backups` successful
    backups holding each service, up to timestamp `through` (included); one query."""
    rank = func.dense_rank().over(
        partition_by=Artifact.service, order_by=(Backup.timestamp.desc(), Backup.id.desc())
    )
    ranked = (
        select(
            Backup.id.label("backup_id"),
            Backup.timestamp,
            Artifact.service,
            Artifact.size,
            Artifact.source_size,
            Artifact.encryption,
            rank.label("rank"),
        )
        .join(Artifact)
        .where(
            Backup.namespace == namespace,
            Backup.status == SUCCESS,
            Backup.timestamp <= through,
            Artifact.status == SUCCESS,
            Artifact.service.in_(sorted(services)),
        )
        .subquery()
    )
    query = select(
        ranked.c.backup_id,
        ranked.c.timestamp,
        ranked.c.service,
        ranked.c.size,
        ranked.c.source_size,
        ranked.c.encryption,
    ).where(ranked.c.rank <= backups)
    return [
        # The JSON column reads back None whether SQL NULL or JSON null was stored.
        ArtifactSizes(backup_id, stamp, service, size or 0, source or 0, bool(encryption))
        for backup_id, stamp, service, size, source, encryption in session.execute(query)
    ]


def newest_service_anomalies(session: Session) -> list[tuple[str, str, int, str | None]]:
    """Per namespace and service, of the newest successful backup holding it: the service's
    source bytes and its size anomaly (None: none)."""
    newest = _newest_service_stamps()
    query = (
        select(
            Backup.namespace,
            Artifact.service,
            func.sum(Artifact.source_size),
            func.max(Artifact.size_anomaly),
        )
        .join(Artifact)
        .join(
            newest,
            (Backup.namespace == newest.c.namespace)
            & (Artifact.service == newest.c.service)
            & (Backup.timestamp == newest.c.stamp),
        )
        .group_by(Backup.namespace, Artifact.service)
    )
    return [
        (ns, svc, int(source or 0), anomaly) for ns, svc, source, anomaly in session.execute(query)
    ]


def failed_artifacts(session: Session) -> list[tuple[str, str, int]]:
    """(namespace, service, how many Failed artifacts)."""
    query = (
        select(Backup.namespace, Artifact.service, func.count(Artifact.id))
        .join(Artifact)
        .where(Artifact.status == FAILED)
        .group_by(Backup.namespace, Artifact.service)
    )
    return [(namespace, service, count) for namespace, service, count in session.execute(query)]


def verifications_in_order(session: Session) -> Sequence[Verification]:
    """Every verification, oldest first."""
    query = select(Verification).order_by(Verification.checked_at, Verification.id)
    return session.scalars(query).all()


def verification_counts(session: Session) -> list[tuple[str, str, str, int]]:
    """(namespace, kind, status, how many verifications)."""
    query = select(
        Verification.namespace,
        Verification.kind,
        Verification.status,
        func.count(Verification.id),
    ).group_by(Verification.namespace, Verification.kind, Verification.status)
    return [(ns, kind, status, count) for ns, kind, status, count in session.execute(query)]


def latest_verification(session: Session, *, namespace: str) -> Verification | None:
    query = (
        select(Verification)
        .where(Verification.namespace == namespace)
        .order_by(Verification.checked_at.desc(), Verification.id.desc())
    )
    return session.scalars(query).first()


def open_alerts_by_event(session: Session) -> list[tuple[str, int]]:
    """(event, how many open alert conditions)."""
    query = (
        select(Alert.event, func.count(Alert.id))
        .where(Alert.resolved_at.is_(None))
        .group_by(Alert.event)
    )
    return [(event, count) for event, count in session.execute(query)]


def open_alert_count(session: Session, *, namespace: str) -> int:
    query = select(func.count(Alert.id)).where(
        Alert.namespace == namespace, Alert.resolved_at.is_(None)
    )
    return session.scalar(query) or 0
