"""Keyword-only data access. Callers own the session and its transaction."""

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.models import ACTIVE_STATUSES, Artifact, Backup, Restore
from workers.errors import ConflictError
from workers.timestamps import format_timestamp, utcnow

_TIMESTAMP_TRIES = 10


def active_backup(session: Session, *, namespace: str) -> Backup | None:
    query = select(Backup).where(Backup.namespace == namespace, Backup.status.in_(ACTIVE_STATUSES))
    return session.scalars(query).first()


def active_restore(session: Session, *, namespace: str) -> Restore | None:
    query = select(Restore).where(
        Restore.namespace == namespace, Restore.status.in_(ACTIVE_STATUSES)
    )
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
    timestamp of the backup in the way.
    """
    moment = moment or utcnow()
    for attempt in range(_TIMESTAMP_TRIES):
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
                raise ConflictError(
                    f"backup {running.timestamp} of namespace {namespace} is {running.status}",
                    timestamp=running.timestamp,
                ) from None
            if task_id is not None and (same := backup_by_task(session, task_id=task_id)):
                return same
            continue  # that second is taken by a finished backup: try the next one
        return backup
    raise ConflictError(f"no free timestamp for a backup of namespace {namespace}")


def backup_by_task(session: Session, *, task_id: str) -> Backup | None:
    return session.scalars(select(Backup).where(Backup.task_id == task_id)).first()


def get_backup(session: Session, *, namespace: str, timestamp: str) -> Backup | None:
    query = select(Backup).where(Backup.namespace == namespace, Backup.timestamp == timestamp)
    return session.scalars(query).first()


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


def upsert_artifact(
    session: Session,
    *,
    backup: Backup,
    service: str,
    kind: str,
    key: str,
    fmt: str,
    compression: str,
    volume: int = 1,
) -> Artifact:
    """The artifact row of a service's volume; a redelivered task finds the one it made."""
    existing = session.scalars(
        select(Artifact).where(
            Artifact.backup_id == backup.id, Artifact.service == service, Artifact.volume == volume
        )
    ).first()
    if existing is not None:
        return existing
    artifact = Artifact(
        backup=backup, service=service, volume=volume, kind=kind, key=key, format=fmt,
        compression=compression,
    )  # fmt: skip
    session.add(artifact)
    session.flush()
    return artifact


def create_restore(
    session: Session,
    *,
    namespace: str,
    source_namespace: str,
    timestamp: str,
    services: list[str],
    skipped: list[str],
    backup_url: str,
    requested_by: str | None = None,
    requested_customer: str | None = None,
) -> Restore:
    """Insert a Pending restore; ConflictError if one of the namespace is active."""
    restore = Restore(
        namespace=namespace,
        source_namespace=source_namespace,
        timestamp=timestamp,
        services=services,
        skipped=skipped,
        backup_url=backup_url,
        requested_by=requested_by,
        requested_customer=requested_customer,
    )
    try:
        with session.begin_nested():
            session.add(restore)
    except SQLIntegrityError:
        running = active_restore(session, namespace=namespace)
        stamp = running.timestamp if running else None
        raise ConflictError(
            f"a restore of {stamp} into namespace {namespace} is already in progress",
            timestamp=stamp,
        ) from None
    return restore


def get_restore(session: Session, *, restore_id: int) -> Restore | None:
    return session.get(Restore, restore_id)


def latest_restore(
    session: Session,
    *,
    timestamp: str,
    namespace: str | None = None,
    within: Collection[str] | None = None,
) -> Restore | None:
    """The newest restore of that backup timestamp (into `namespace`, when given).

    `within`: only restores whose target and source namespaces are both among these.
    """
    query = select(Restore).where(Restore.timestamp == timestamp).order_by(Restore.id.desc())
    if namespace is not None:
        query = query.where(Restore.namespace == namespace)
    if within is not None:
        allowed = sorted(within)
        query = query.where(Restore.namespace.in_(allowed), Restore.source_namespace.in_(allowed))
    return session.scalars(query).first()
