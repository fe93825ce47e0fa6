"""The backups table: creating a Pending backup, finding, locking, listing and deleting
backups, and what retention and the copy sweep read of them."""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Row, delete, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.direct_rows import TIMESTAMP_TRIES, backup_in_the_way, no_free_timestamp
from workers.catalog.models import ACTIVE_STATUSES, SUCCESS, Backup, SkippedRun
from workers.timestamps import format_timestamp, utcnow


def active_backup(session: Session, *, namespace: str) -> Backup | None:
    query = select(Backup).where(Backup.namespace == namespace, Backup.status.in_(ACTIVE_STATUSES))
    return session.scalars(query).first()


def create_backup(
    session: Session,
    *,
    namespace: str,
    services: list[str],
    only_config: bool,
    trigger: str,
    requested_by: str | None = None,
    requested_customer: str | None = None,
    task_id: str | None = None,
    moment: datetime | None = None,
) -> Backup:
    """Insert a Pending backup stamped now (or the next free second).

    The database's partial unique index makes the "one active backup per
    namespace" check atomic: a collision raises ConflictError naming the
    timestamp of the backup in the way. (direct_rows.py writes the same row in plain
    SQL for `backfleet backup`.)
    """
    moment = moment or utcnow()
    for attempt in range(TIMESTAMP_TRIES):
        backup = Backup(
            namespace=namespace,
            timestamp=format_timestamp(moment + timedelta(seconds=attempt)),
            services=services,
            only_config=only_config,
            trigger=trigger,
            requested_by=requested_by,
            requested_customer=requested_customer,
            task_id=task_id,
        )
        try:
            with session.begin_nested():
                session.add(backup)
        except SQLIntegrityError:
            running = active_backup(session, namespace=namespace)
            if running is not None:
                raise backup_in_the_way(namespace, running.timestamp, running.status) from None
            if task_id is not None and (same := backup_by_task(session, task_id=task_id)):
                return same
            continue  # that second is taken by a finished backup: try the next one
        return backup
    raise no_free_timestamp(namespace)


def backup_by_task(session: Session, *, task_id: str) -> Backup | None:
    return session.scalars(select(Backup).where(Backup.task_id == task_id)).first()


def get_backup(session: Session, *, namespace: str, timestamp: str) -> Backup | None:
    query = select(Backup).where(Backup.namespace == namespace, Backup.timestamp == timestamp)
    return session.scalars(query).first()


def lock_backup(session: Session, *, backup_id: int) -> Backup | None:
    """The backup row, locked (SELECT ... FOR UPDATE) until the caller's transaction ends."""
    query = select(Backup).where(Backup.id == backup_id).with_for_update()
    return session.scalars(query).first()


def active_backups(session: Session) -> Sequence[Backup]:
    """Every Pending or Running backup."""
    return session.scalars(select(Backup).where(Backup.status.in_(ACTIVE_STATUSES))).all()


def backup_namespaces(session: Session) -> set[str]:
    """Every namespace the catalog has backups of."""
    return set(session.scalars(select(Backup.namespace).distinct()))


def newest_success(
    session: Session, *, namespace: str, excluding_id: int | None = None
) -> Backup | None:
    """The namespace's newest successful backup (other than `excluding_id`)."""
    query = select(Backup).where(Backup.namespace == namespace, Backup.status == SUCCESS)
    if excluding_id is not None:
        query = query.where(Backup.id != excluding_id)
    return session.scalars(query.order_by(Backup.timestamp.desc()).limit(1)).first()


def uncopied_backups(session: Session, *, limit: int) -> list[tuple[str, str]]:
    """(namespace, timestamp) of successful backups not copied to the secondary, oldest first."""
    query = (
        select(Backup.namespace, Backup.timestamp)
        .where(Backup.status == SUCCESS, Backup.copied_at.is_(None))
        .order_by(Backup.timestamp)
        .limit(limit)
    )
    return [(namespace, timestamp) for namespace, timestamp in session.execute(query).all()]


# What retention weighs of each backup.
_RETENTION_COLUMNS = (
    Backup.timestamp,
    Backup.only_config,
    Backup.pinned,
    Backup.verified,
    Backup.services,
    Backup.status,
)


def retention_facts(
    session: Session, *, namespace: str, timestamps: Iterable[str] | None = None
) -> Sequence[Row[str, bool, bool, str | None, list[str], str]]:
    """Retention's columns of the namespace's successful backups, or of those `timestamps`
    whatever their status."""
    query = select(*_RETENTION_COLUMNS).where(Backup.namespace == namespace)
    if timestamps is None:
        query = query.where(Backup.status == SUCCESS)
    else:
        query = query.where(Backup.timestamp.in_(list(timestamps)))
    return session.execute(query).all()


def delete_backups(session: Session, *, namespace: str, timestamps: Iterable[str]) -> None:
    """Delete the rows; the database cascades to artifacts and parts, unlinks verifications."""
    stamps = list(timestamps)
    session.execute(
        delete(Backup).where(Backup.namespace == namespace, Backup.timestamp.in_(stamps))
    )


def record_skipped_run(
    session: Session,
    *,
    namespace: str,
    schedule: str,
    services: list[str],
    reason: str,
    task_id: str,
) -> None:
    """Record a scheduled backup that was skipped, once per task (a retried task finds it)."""
    if session.query(SkippedRun).filter_by(task_id=task_id).first() is None:
        session.add(
            SkippedRun(
                namespace=namespace,
                schedule=schedule,
                services=services,
                reason=reason,
                task_id=task_id,
            )
        )


def latest_backup(session: Session, *, namespace: str) -> Backup | None:
    """The newest backup of the namespace, whatever its status."""
    query = (
        select(Backup)
        .where(Backup.namespace == namespace)
        .order_by(Backup.timestamp.desc(), Backup.id.desc())
    )
    return session.scalars(query).first()


def list_backups(
    session: Session, *, namespace: str | None = None, limit: int = 100
) -> Sequence[Backup]:
    query = select(Backup).order_by(Backup.timestamp.desc(), Backup.id.desc()).limit(limit)
    if namespace is not None:
        query = query.where(Backup.namespace == namespace)
    return session.scalars(query).all()
