"""The base backups of a `pitr` service (artifact format `pgbase`) the catalog records as
successful: what the recoverable window and a restore to a moment start from
(workers/pitr/window.py)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.catalog.models import SUCCESS, Artifact, Backup

PGBASE = "pgbase"  # the artifact format (workers.sources.PGBASE; the catalog sits below it)


@dataclass(frozen=True)
class BaseBackupRow:
    """One successful backup's base backup of a service: its timestamp, the facts its
    artifact recorded (start_lsn, end_lsn, end_time, system_identifier, timeline...), and
    when the backup finished."""

    timestamp: str
    facts: Mapping[str, Any]
    service: str = ""
    finished_at: datetime | None = None


def base_backups(
    session: Session, *, namespace: str, service: str | None = None
) -> list[BaseBackupRow]:
    """The base backups (volume 1: a base backup is one object) in successful backups of
    the namespace, of one service or of every one, oldest backup first."""
    query = (
        select(Backup.timestamp, Artifact.facts, Artifact.service, Backup.finished_at)
        .join(Artifact, Artifact.backup_id == Backup.id)
        .where(
            Backup.namespace == namespace,
            Backup.status == SUCCESS,
            Artifact.status == SUCCESS,
            Artifact.format == PGBASE,
            Artifact.volume == 1,
        )
        .order_by(Backup.timestamp, Backup.id, Artifact.service)
    )
    if service is not None:
        query = query.where(Artifact.service == service)
    return [
        BaseBackupRow(stamp, dict(facts or {}), name, finished)
        for stamp, facts, name, finished in session.execute(query)
    ]
