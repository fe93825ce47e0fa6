"""Artifacts and their upload parts: a service's volume row, the uploads of running
backups, forgetting parts, size anomalies, the services a namespace's backups hold."""

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from workers.catalog.models import RUNNING, Artifact, Backup, UploadPart


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
