"""The restores table: creating a Pending restore, locking it, finishing an attempt by
compare and set, and finding the active or latest ones."""

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.models import ACTIVE_STATUSES, RUNNING, Restore
from workers.errors import ConflictError


def active_restore(session: Session, *, namespace: str) -> Restore | None:
    query = select(Restore).where(
        Restore.namespace == namespace, Restore.status.in_(ACTIVE_STATUSES)
    )
    return session.scalars(query).first()


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
    target_time: datetime | None = None,
) -> Restore:
    """Insert a Pending restore (to `target_time`, for a restore to a moment); ConflictError
    if one of the namespace is active."""
    restore = Restore(
        namespace=namespace,
        source_namespace=source_namespace,
        timestamp=timestamp,
        services=services,
        skipped=skipped,
        backup_url=backup_url,
        requested_by=requested_by,
        requested_customer=requested_customer,
        target_time=target_time,
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
