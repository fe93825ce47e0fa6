"""The base backups of a `pitr` service (artifact format `pgbase`) the catalog records as
successful: what the recoverable window and a restore to a moment start from
(workers/pitr/window.py)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.catalog.models import SUCCESS, Artifact, Backup

PGBASE = "pgbase"  # the artifact format (workers.sources.PGBASE; the catalog sits below it)


@dataclass(frozen=True)
class BaseBackupRow:
    """One successful backup's base backup of the service: its timestamp and the facts its
    artifact recorded (start_lsn, end_lsn, end_time, system_identifier, timeline...)."""

    timestamp: str
    facts: Mapping[str, Any]


def base_backups(session: Session, *, namespace: str, service: str) -> list[BaseBackupRow]:
    """The service's base backups in successful backups of the namespace, oldest first."""
    query = (
        select(Backup.timestamp, Artifact.facts)
        .join(Artifact, Artifact.backup_id == Backup.id)
        .where(
            Backup.namespace == namespace,
            Backup.status == SUCCESS,
            Artifact.service == service,
            Artifact.status == SUCCESS,
            Artifact.format == PGBASE,
        )
        .order_by(Backup.timestamp, Backup.id)
    )
    return [BaseBackupRow(stamp, dict(facts or {})) for stamp, facts in session.execute(query)]
