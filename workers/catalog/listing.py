"""The catalog's backups, filtered and a page at a time: `GET /athena/api/v1/backups` and the
catalog page (api/ui/).

Newest first, by (timestamp, id); a page continues after a position (keyset pagination),
so a backup taken meanwhile never shifts the next page. A page is one query (the filters,
the order and a LIMIT) and the sizes of its backups' artifacts one aggregate query more,
never one per backup. Keyword-only like queries.py; callers own the session.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, Text, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from workers.catalog.models import Artifact, Backup


@dataclass(frozen=True)
class BackupFilter:
    namespaces: Collection[str]  # already checked against the caller's scope
    service: str | None = None  # backups that hold (or were to hold) this service
    status: str | None = None
    since: str | None = None  # backup timestamps, both ends included
    until: str | None = None


@dataclass(frozen=True)
class Position:
    """Where a page ended: the next one starts after this backup."""

    timestamp: str
    backup_id: int


@dataclass(frozen=True)
class ListedBackup:
    backup: Backup
    stored: int | None  # the stored bytes of its artifacts so far; None: no artifact sized yet
    source: int | None  # the source bytes they were made from


@dataclass(frozen=True)
class BackupPage:
    backups: list[ListedBackup]
    next: Position | None  # None: this was the last page


def _filtered(where: BackupFilter) -> Select[Backup]:
    query = select(Backup).where(Backup.namespace.in_(sorted(where.namespaces)))
    if where.service is not None:
        # A Pending backup has no artifact yet: its `services` (a JSON list) names them. A
        # service name is a DNS label, so neither `%` nor `_` can make the pattern wider.
        listed = cast(Backup.services, Text).like(f'%"{where.service}"%')
        has_artifact = (
            select(Artifact.id)
            .where(Artifact.backup_id == Backup.id, Artifact.service == where.service)
            .exists()
        )
        query = query.where(or_(listed, has_artifact))
    if where.status is not None:
        query = query.where(Backup.status == where.status)
    if where.since is not None:
        query = query.where(Backup.timestamp >= where.since)
    if where.until is not None:
        query = query.where(Backup.timestamp <= where.until)
    return query


def backup_page(
    session: Session, *, where: BackupFilter, after: Position | None = None, limit: int
) -> BackupPage:
    """Up to `limit` backups matching `where`, newest first, after `after` when given."""
    if not where.namespaces:
        return BackupPage([], None)
    query = _filtered(where)
    if after is not None:
        query = query.where(
            or_(
                Backup.timestamp < after.timestamp,
                and_(Backup.timestamp == after.timestamp, Backup.id < after.backup_id),
            )
        )
    query = query.order_by(Backup.timestamp.desc(), Backup.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more, rows = len(rows) > limit, rows[:limit]
    sizes = artifact_sizes(session, backup_ids=[row.id for row in rows])
    listed = [ListedBackup(row, *sizes.get(row.id, (None, None))) for row in rows]
    last = rows[-1] if more else None
    return BackupPage(listed, Position(last.timestamp, last.id) if last else None)


def artifact_sizes(
    session: Session, *, backup_ids: Sequence[int]
) -> dict[int, tuple[int | None, int | None]]:
    """Per backup: the stored and source bytes of its artifacts (sums; None: none known)."""
    if not backup_ids:
        return {}
    query = (
        select(Artifact.backup_id, func.sum(Artifact.size), func.sum(Artifact.source_size))
        .where(Artifact.backup_id.in_(list(backup_ids)))
        .group_by(Artifact.backup_id)
    )
    return {
        backup_id: (
            None if stored is None else int(stored),
            None if source is None else int(source),
        )
        for backup_id, stored, source in session.execute(query)
    }
