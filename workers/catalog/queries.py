"""Keyword-only data access. Callers own the session and its transaction."""

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Row, Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session, aliased

from workers.catalog.direct_rows import (
    TIMESTAMP_TRIES,
    backup_in_the_way,
    no_free_timestamp,
)
from workers.catalog.models import (
    ACTIVE_STATUSES,
    FAILED,
    RUNNING,
    SUCCESS,
    Artifact,
    Backup,
    Restore,
    SkippedRun,
    UploadPart,
    Verification,
)
from workers.errors import ConflictError
from workers.timestamps import format_timestamp, utcnow


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


def least_recently_verified(
    session: Session,
    *,
    namespace: str,
    excluding_id: int | None = None,
    excluding_ids: Collection[int] = (),
    limit: int,
) -> Sequence[Backup]:
    """Successful backups never verified first, then the longest ago verified; oldest first."""
    skip = [*excluding_ids, *([] if excluding_id is None else [excluding_id])]
    query = (
        select(Backup)
        .where(Backup.namespace == namespace, Backup.status == SUCCESS, Backup.id.not_in(skip))
        .order_by(Backup.verified_at.is_not(None), Backup.verified_at, Backup.timestamp)
        .limit(limit)
    )
    return session.scalars(query).all()


def newest_success_holding(session: Session, *, namespace: str, service: str) -> Backup | None:
    """The newest successful backup holding a successful artifact of `service`, whatever
    its kind (full, onlyConfig, or one of the service's own schedule)."""
    return session.scalars(
        _holding(namespace, service).order_by(Backup.timestamp.desc()).limit(1)
    ).first()


def newest_verified_good(
    session: Session, *, namespace: str, service: str | None = None
) -> Backup | None:
    """The newest successful backup whose last verification passed (holding a successful
    artifact of `service`, when given)."""
    query = (
        select(Backup).where(Backup.namespace == namespace, Backup.status == SUCCESS)
        if service is None
        else _holding(namespace, service)
    )
    query = query.where(Backup.verified == SUCCESS)
    return session.scalars(query.order_by(Backup.timestamp.desc()).limit(1)).first()


def last_verified_newest(
    session: Session, *, namespace: str, service: str, since: datetime | None = None
) -> datetime | None:
    """When a check of the service's newest backup last started and passed: the latest
    start of a successful read-back of a backup holding `service` that no newer backup
    holding it had finished before. A check of an older backup (the rotating sample) does
    not count: the service's newest data was not the one read; nor does a failed one (a
    store that did not answer is tried again next pass), nor a check that failed in
    another store. `since`: only checks that started after it are looked at (None if
    there is none), which bounds the work by the recent history, not the whole of it.

    One pass over the backups holding the service: each one's `newer_done` is the
    earliest end among the newer ones (a window), so no check is compared with every
    newer backup.
    """
    done = func.coalesce(Backup.finished_at, Backup.created_at)
    holding = _holding(namespace, service)
    started = _started(Verification)
    recent: list[ColumnElement[bool]] = []
    if since is not None:
        # A check since then counts only for a backup at least as new as the newest one
        # finished by then: the backups older than that one need not be looked at.
        floor = session.scalar(
            holding.with_only_columns(Backup.timestamp)
            .where(done <= since)
            .order_by(Backup.timestamp.desc())
            .limit(1)
        )
        if floor is not None:
            holding = holding.where(Backup.timestamp >= floor)
        recent.append(started > since)
    newer = holding.with_only_columns(
        Backup.id,
        func.min(done).over(order_by=Backup.timestamp.desc(), rows=(None, -1)).label("newer_done"),
    ).subquery()
    failed = aliased(Verification)
    query = (
        select(func.max(started))
        .join(newer, Verification.backup_id == newer.c.id)
        .where(
            Verification.kind == "read",
            Verification.status == SUCCESS,
            *recent,
            newer.c.newer_done.is_(None) | (started < newer.c.newer_done),
            ~select(failed.id)
            .where(
                failed.backup_id == Verification.backup_id,
                failed.kind == "read",
                failed.status == FAILED,
                _started(failed) == started,
            )
            .exists(),
        )
    )
    stamp: datetime | None = session.scalar(query)  # UTC-aware: the column's type applies
    return stamp


def last_read_failed(session: Session, *, backup_id: int) -> bool:
    """Whether the backup's latest read-back (in any store) failed."""
    started = _started(Verification)
    rows = session.execute(
        select(started, Verification.status)
        .where(Verification.backup_id == backup_id, Verification.kind == "read")
        .order_by(started.desc(), Verification.id.desc())
        .limit(10)  # one row per store: a check has two at most
    ).all()
    return any(when == rows[0][0] and status == FAILED for when, status in rows)


def _started(verification: type[Verification]) -> ColumnElement[datetime]:
    """When a check started (its end, for rows recorded before migration 0014)."""
    return func.coalesce(verification.started_at, verification.checked_at)


def services_in_backups(session: Session, *, namespace: str) -> list[str]:
    """Every service with an artifact in the namespace's backups, in name order."""
    query = (
        select(Artifact.service)
        .join(Backup)
        .where(Backup.namespace == namespace)
        .distinct()
        .order_by(Artifact.service)
    )
    return list(session.scalars(query))


def _holding(namespace: str, service: str) -> Select[Backup]:
    """The namespace's successful backups with a successful artifact of `service`."""
    return select(Backup).where(
        Backup.namespace == namespace, Backup.status == SUCCESS, _holds(Backup, service)
    )


def _holds(backup: type[Backup], service: str) -> ColumnElement[bool]:
    """`backup` (the class or an alias of it) has a successful artifact of `service`."""
    return (
        select(Artifact.id)
        .where(
            Artifact.backup_id == backup.id,
            Artifact.service == service,
            Artifact.status == SUCCESS,
        )
        .exists()
    )


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


def mark_size_anomalies(session: Session, *, backup_id: int, anomalies: Mapping[str, str]) -> None:
    """Record each service's size anomaly on its first volume, and all of them on the backup."""
    backup = session.get(Backup, backup_id)
    if backup is None:
        return  # deleted meanwhile: nothing to mark
    backup.size_anomaly = "; ".join(anomalies[s] for s in sorted(anomalies)) or None
    first: dict[str, Artifact] = {}
    for row in sorted(backup.artifacts, key=lambda r: r.volume):
        if row.service in anomalies:
            first.setdefault(row.service, row)
    for service, row in first.items():
        row.size_anomaly = anomalies[service]


def running_upload_ids(session: Session) -> set[str]:
    """The multipart upload ids of artifacts of Running backups."""
    query = (
        select(Artifact.upload_id)
        .join(Backup)
        .where(Backup.status == RUNNING, Artifact.upload_id.is_not(None))
    )
    return {upload_id for upload_id in session.scalars(query) if upload_id is not None}


def artifacts_of_upload(session: Session, *, upload_id: str) -> Sequence[Artifact]:
    return session.scalars(select(Artifact).where(Artifact.upload_id == upload_id)).all()


def forget_parts(session: Session, *, artifact_id: int, number: int | None = None) -> None:
    """Delete the artifact's recorded upload parts (only part `number`, when given)."""
    query = delete(UploadPart).where(UploadPart.artifact_id == artifact_id)
    if number is not None:
        query = query.where(UploadPart.number == number)
    session.execute(query)


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
        backup=backup,
        service=service,
        volume=volume,
        kind=kind,
        key=key,
        format=fmt,
        compression=compression,
    )
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


def lock_restore(session: Session, *, restore_id: int) -> Restore | None:
    """The restore row, locked (SELECT ... FOR UPDATE) until the caller's transaction ends."""
    query = select(Restore).where(Restore.id == restore_id).with_for_update()
    return session.scalars(query).first()


def active_restores(session: Session) -> Sequence[Restore]:
    """Every Pending or Running restore."""
    return session.scalars(select(Restore).where(Restore.status.in_(ACTIVE_STATUSES))).all()


def restores_reading(session: Session, *, source_namespace: str) -> list[tuple[int, str, str]]:
    """(id, timestamp, status) of the Pending or Running restores of the namespace's backups."""
    query = select(Restore.id, Restore.timestamp, Restore.status).where(
        Restore.source_namespace == source_namespace, Restore.status.in_(ACTIVE_STATUSES)
    )
    return [(restore_id, stamp, status) for restore_id, stamp, status in session.execute(query)]


def finish_restore_attempt(
    session: Session, *, restore_id: int, attempt: int, values: Mapping[str, Any]
) -> bool:
    """Compare and set: write `values` only while the row is Running for `attempt`.

    True if this attempt still owned the row (exactly one row changed).
    """
    changed = session.execute(
        update(Restore)
        .where(Restore.id == restore_id, Restore.status == RUNNING, Restore.attempts == attempt)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], changed).rowcount == 1


def set_restore_message(session: Session, *, restore_id: int, message: str | None) -> None:
    """What the restore waits for (None: nothing any more), while it is Running."""
    session.execute(
        update(Restore)
        .where(Restore.id == restore_id, Restore.status == RUNNING)
        .values(message=message)
        .execution_options(synchronize_session=False)
    )


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
