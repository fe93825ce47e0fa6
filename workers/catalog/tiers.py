"""Where each backup's artifacts are stored, and since when: what retention moves colder
and holds until its class's billed minimum has passed (workers/operations/tiers.py).

Keyword-only like queries.py; callers own the session.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workers.catalog.models import SUCCESS, Artifact, Backup


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    storage_class: str | None  # None: the store's default (rows from before revision 0012)
    since: datetime | None  # when it moved there; None: where it was written


def stored_artifacts(session: Session, *, namespace: str) -> dict[str, list[StoredArtifact]]:
    """Timestamp -> the successful artifacts of each successful backup of the namespace."""
    query = (
        select(Backup.timestamp, Artifact.key, Artifact.storage_class, Artifact.storage_class_since)
        .join(Artifact, Artifact.backup_id == Backup.id)
        .where(Backup.namespace == namespace, Backup.status == SUCCESS, Artifact.status == SUCCESS)
        .order_by(Backup.timestamp, Artifact.key)
    )
    found: dict[str, list[StoredArtifact]] = {}
    for stamp, key, storage_class, since in session.execute(query):
        found.setdefault(stamp, []).append(StoredArtifact(key, storage_class, since))
    return found


def record_storage_class(
    session: Session,
    *,
    namespace: str,
    timestamp: str,
    keys: Iterable[str],
    storage_class: str,
    since: datetime,
) -> None:
    """The artifacts `keys` of that backup are now in `storage_class`, since `since`."""
    record_storage_classes(
        session,
        namespace=namespace,
        timestamp=timestamp,
        classes=dict.fromkeys(keys, storage_class),
        since=since,
    )


def record_storage_classes(
    session: Session,
    *,
    namespace: str,
    timestamp: str,
    classes: Mapping[str, str],
    since: datetime,
) -> None:
    """Each artifact (key -> class) of that backup is now in its class, since `since`."""
    backup_id = session.scalar(
        select(Backup.id).where(Backup.namespace == namespace, Backup.timestamp == timestamp)
    )
    if backup_id is None:
        return  # deleted meanwhile: nothing to record
    for key, storage_class in classes.items():
        session.execute(
            update(Artifact)
            .where(Artifact.backup_id == backup_id, Artifact.key == key)
            .values(storage_class=storage_class, storage_class_since=since)
            .execution_options(synchronize_session=False)
        )
