"""Which backups hold a service, and what their read-backs said: the newest good one,
the least recently verified, when a service's newest backup was last checked."""

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, aliased

from workers.catalog.models import FAILED, SUCCESS, Artifact, Backup, Verification


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
